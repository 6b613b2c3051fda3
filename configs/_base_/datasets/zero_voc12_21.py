# Pascal VOC 2012 with background as a class (21 classes: "VOC-20b" / "PAS-21"). Same images,
# label maps, split files and pipelines as VOC-20; only the dataset type (labels not shifted,
# background kept) and the class ids differ.
_base_ = './zero_voc12_20_aug.py'
dataset_type = 'ZeroPascalVOCDataset21'
both_class = list(range(21))
# VOC-20's 5 unseen classes, each id + 1 past background (background is seen)
novel_class = [16, 17, 18, 19, 20]
base_class = [i for i in range(21) if i not in novel_class]
data = dict(
    train=dict(type=dataset_type, unseen_classes=novel_class),
    val=dict(type=dataset_type, unseen_classes=novel_class),
    test=dict(type=dataset_type, unseen_classes=novel_class))
