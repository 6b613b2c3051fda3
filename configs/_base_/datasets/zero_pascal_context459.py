# Pascal Context-459 (full vocabulary), evaluation only: VOC2010 JPEGs and the uint16 maps made
# from trainval.tar.gz by
#   python tools/convert_datasets/pascal_context_459.py datasets/VOCdevkit/VOC2010 --nproc 8
# (ids 0-458, unlabelled 65535), on Pascal Context's validation list (5105 images, the
# Context-59 val.txt). No data.train: the dataset refuses training (a cross-dataset target).
_base_ = './pipelines_512.py'
dataset_type = 'ZeroPascalContextDataset459'
data_root = 'datasets/VOCdevkit/VOC2010'
both_class = list(range(459))
novel_class = []
base_class = both_class
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    val=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
             ann_dir='annotations_detectron2/pc459_val', split='ImageSets/SegmentationContext/val.txt',
             unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='JPEGImages',
              ann_dir='annotations_detectron2/pc459_val', split='ImageSets/SegmentationContext/val.txt',
              unseen_classes=novel_class, pipeline={{_base_.test_pipeline}}))
