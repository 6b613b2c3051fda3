# ADE20K (SceneParsing), 150 classes, MMSeg's ADEChallengeData2016 layout (label 0 = "other",
# ignored). No zero-shot split: the paper has none for ADE20K, so every class is "seen" and the
# report is plain mIoU (the cross-dataset configs). Set novel_class for a zero-shot split.
_base_ = './pipelines_512.py'
dataset_type = 'ZeroADE20KDataset150'
data_root = 'datasets/ADEChallengeData2016'
both_class = list(range(150))
novel_class = []
base_class = [i for i in range(150) if i not in novel_class]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    train=dict(type=dataset_type, data_root=data_root, img_dir='images/training',
               ann_dir='annotations/training', unseen_classes=novel_class,
               pipeline={{_base_.train_pipeline}}),
    val=dict(type=dataset_type, data_root=data_root, img_dir='images/validation',
             ann_dir='annotations/validation', unseen_classes=novel_class,
             pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='images/validation',
              ann_dir='annotations/validation', unseen_classes=novel_class,
              pipeline={{_base_.test_pipeline}}))
