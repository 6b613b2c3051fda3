# A model trained on COCO-Stuff (inductive) evaluated on Pascal VOC 20 with VOC's text
# embeddings. Every target class is a "base" class, so the calibration shifts all scores
# equally and the report is plain mIoU.
#   python tools/test.py configs/cross_dataset/coco-to-voc.py COCO_CKPT --eval mIoU
_base_ = ['../_base_/cross_dataset_from_coco.py', '../_base_/datasets/zero_voc12_20_aug.py']
model = dict(
    base_class={{_base_.both_class}},
    both_class={{_base_.both_class}},
    multi_prompts=False,  # the published VOC embeddings use one template
    load_text_embedding='text_embeddings/voc20_single.npy')
# no unseen classes in the target: plain mIoU
data = dict(val=dict(unseen_classes=[]), test=dict(unseen_classes=[]))
