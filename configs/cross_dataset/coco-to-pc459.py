# A model trained on COCO-Stuff (inductive) evaluated on Pascal Context-459 (plain mIoU).
#   python tools/test.py configs/cross_dataset/coco-to-pc459.py COCO_CKPT --eval mIoU
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/datasets/zero_pascal_context459.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py'
]
model = dict(
    base_class={{_base_.both_class}},
    novel_class=[],
    both_class={{_base_.both_class}},
    multi_prompts=True,
    backbone=dict(num_tokens=50),
    load_text_embedding='text_embeddings/pc459_multi.npy')
# trained on COCO-Stuff's classes, tested on this dataset's: the checkpoint's meta['CLASSES']
# is not required to be the dataset's
cross_dataset = True
