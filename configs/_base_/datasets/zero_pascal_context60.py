# Pascal Context, 60 classes: background (0) is a class, MMSeg's PascalContextDataset layout.
# Zero-shot split: Context-59's 10 unseen classes (ids + 1); background is seen.
_base_ = './pipelines_512.py'
dataset_type = 'ZeroPascalContextDataset60'
data_root = 'datasets/VOCdevkit/VOC2010'
both_class = list(range(60))
novel_class = [1, 3, 4, 8, 10, 14, 18, 20, 32, 38]
base_class = [i for i in range(60) if i not in novel_class]
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
