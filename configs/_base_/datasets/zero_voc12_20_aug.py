# Pascal VOC 2012 + aug, 20 classes without background; the zero-shot split of the paper (defined here only).
_base_ = './pipelines_512.py'
dataset_type = 'ZeroPascalVOCDataset20'
data_root = 'datasets/VOCdevkit/VOC2012'
both_class = list(range(20))
novel_class = [15, 16, 17, 18, 19]
base_class = [i for i in range(20) if i not in novel_class]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    train=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
               ann_dir='SegmentationClassAug', split='ImageSets/Segmentation/aug.txt',
               unseen_classes=novel_class, pipeline={{_base_.train_pipeline}}),
    val=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
             ann_dir='SegmentationClass', split='ImageSets/Segmentation/val.txt',
             unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
              ann_dir='SegmentationClass', split='ImageSets/Segmentation/val.txt',
              unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}))
