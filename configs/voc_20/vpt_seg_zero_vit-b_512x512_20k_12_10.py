# Pascal VOC 2012 (aug), inductive zero-shot: 15 seen / 5 unseen classes.
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/datasets/zero_voc12_20_aug.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_20k.py'
]
model = dict(
    base_class={{_base_.base_class}},
    novel_class={{_base_.novel_class}},
    both_class={{_base_.both_class}},
    backbone=dict(num_tokens=10),
    load_text_embedding='text_embeddings/voc20_single.npy')
