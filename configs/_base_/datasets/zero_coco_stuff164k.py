# COCO-Stuff 164k, 171 classes; the zero-shot split of the paper (defined here only).
_base_ = './pipelines_512.py'
dataset_type = 'ZeroCOCOStuffDataset'
data_root = 'datasets/coco_stuff164k'
both_class = list(range(171))
novel_class = [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]
base_class = [i for i in range(171) if i not in novel_class]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    train=dict(type=dataset_type, data_root=data_root, img_dir='images/train2017',
               ann_dir='annotations/train2017', unseen_classes=novel_class,
               pipeline={{_base_.train_pipeline}}),
    val=dict(type=dataset_type, data_root=data_root, img_dir='images/val2017',
             ann_dir='annotations/val2017', unseen_classes=novel_class,
             pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='images/val2017',
              ann_dir='annotations/val2017', unseen_classes=novel_class,
              pipeline={{_base_.test_pipeline}}))
