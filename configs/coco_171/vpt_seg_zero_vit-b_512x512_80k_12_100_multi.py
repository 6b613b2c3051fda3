# COCO-Stuff 164k, inductive zero-shot: 156 seen / 15 unseen classes, 15-template embeddings.
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/datasets/zero_coco_stuff164k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py'
]
model = dict(
    base_class={{_base_.base_class}},
    novel_class={{_base_.novel_class}},
    both_class={{_base_.both_class}},
    multi_prompts=True,
    backbone=dict(num_tokens=50),
    load_text_embedding='text_embeddings/coco_stuff_multi.npy')
