# ADE20K-847 (full ADE20K vocabulary), evaluation only: the layout of the detectron2-based
# open-vocabulary projects, made from the ADE20K_2021_17_01 release by
#   python tools/convert_datasets/ade20k_847.py datasets/ADE20K_2021_17_01 --nproc 8
# uint16 label maps (ids 0-846, 65535 ignored). No training split: the dataset refuses
# training (a cross-dataset target only), so there is no data.train here.
_base_ = './pipelines_512.py'
dataset_type = 'ZeroADE20KDataset847'
data_root = 'datasets/ADE20K_2021_17_01'
both_class = list(range(847))
novel_class = []
base_class = both_class
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=4,
    val=dict(type=dataset_type, data_root=data_root, img_dir='images_detectron2/validation',
             ann_dir='annotations_detectron2/validation', unseen_classes=novel_class,
             pipeline={{_base_.test_pipeline}}),
    test=dict(type=dataset_type, data_root=data_root, img_dir='images_detectron2/validation',
              ann_dir='annotations_detectron2/validation', unseen_classes=novel_class,
              pipeline={{_base_.test_pipeline}}))
