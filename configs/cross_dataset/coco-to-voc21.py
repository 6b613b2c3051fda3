# A model trained on COCO-Stuff (inductive) evaluated on Pascal VOC with background (21
# classes, "VOC-20b" / "PAS-21"; background predicted from its text embedding; plain mIoU).
#   python tools/test.py configs/cross_dataset/coco-to-voc21.py COCO_CKPT --eval mIoU
_base_ = ['../_base_/cross_dataset_from_coco.py', '../_base_/datasets/zero_voc12_21.py']
model = dict(
    base_class={{_base_.both_class}},
    both_class={{_base_.both_class}},
    load_text_embedding='text_embeddings/voc21_multi.npy')
# no unseen classes in the target: plain mIoU
data = dict(val=dict(unseen_classes=[]), test=dict(unseen_classes=[]))
