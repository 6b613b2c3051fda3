# A model trained on COCO-Stuff (inductive) evaluated on ADE20K-847 (plain mIoU).
#   python tools/test.py configs/cross_dataset/coco-to-ade847.py COCO_CKPT --eval mIoU
_base_ = ['../_base_/cross_dataset_from_coco.py', '../_base_/datasets/zero_ade20k847.py']
model = dict(
    base_class={{_base_.both_class}},
    both_class={{_base_.both_class}},
    load_text_embedding='text_embeddings/ade847_multi.npy')
