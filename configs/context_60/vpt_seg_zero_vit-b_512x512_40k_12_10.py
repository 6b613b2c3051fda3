# Pascal Context 60 (background as a seen class), inductive zero-shot: 50 seen / 10 unseen
# classes, the unseen ones those of Context-59. Same recipe as context_59/..._40k_12_10.py.
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/datasets/zero_pascal_context60.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
model = dict(
    base_class={{_base_.base_class}},
    novel_class={{_base_.novel_class}},
    both_class={{_base_.both_class}},
    multi_prompts=True,
    backbone=dict(num_tokens=35),
    load_text_embedding='text_embeddings/context60_multi.npy')
