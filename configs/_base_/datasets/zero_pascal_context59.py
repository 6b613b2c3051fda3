# Pascal Context, 59 classes (background ignored); the zero-shot split of the paper (defined here only).
_base_ = './pipelines_512.py'
dataset_type = 'ZeroPascalVOCDataset59'
data_root = 'datasets/VOCdevkit/VOC2010'
both_class = list(range(59))
novel_class = [0, 2, 3, 7, 9, 13, 17, 19, 31, 37]
base_class = [i for i in range(59) if i not in novel_class]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    train=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
               ann_dir='SegmentationClassContext', split='ImageSets/SegmentationContext/train.txt',
               unseen_classes=novel_class, pipeline={{_base_.train_pipeline}}),
    val=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
             ann_dir='SegmentationClassContext', split='ImageSets/SegmentationContext/val.txt',
             unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
              ann_dir='SegmentationClassContext', split='ImageSets/SegmentationContext/val.txt',
              unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}))
