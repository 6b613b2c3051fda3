# A model trained on COCO-Stuff (inductive) evaluated on Pascal Context-459 (plain mIoU).
#   python tools/test.py configs/cross_dataset/coco-to-pc459.py COCO_CKPT --eval mIoU
_base_ = ['../_base_/cross_dataset_from_coco.py', '../_base_/datasets/zero_pascal_context459.py']
model = dict(
    base_class={{_base_.both_class}},
    both_class={{_base_.both_class}},
    load_text_embedding='text_embeddings/pc459_multi.npy')
