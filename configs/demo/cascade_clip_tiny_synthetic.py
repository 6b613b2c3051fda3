# The offline demo: the published Cascade-CLIP structure at toy size (12 blocks, width 64,
# deep prompts, three cascade stages) on the synthetic colour x texture dataset made by
# tools/make_demo_data.py. 12 classes, 4 unseen combinations.
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/default_runtime.py',
    '../_base_/schedules/adamw_poly.py'
]
data_root = 'data/demo'
classes = [f'{c} {t}' for c in ('red', 'green', 'blue', 'yellow') for t in ('flat', 'stripes', 'dots')]
both_class = list(range(12))
novel_class = [2, 4, 6, 10]  # red dots, green stripes, blue flat, yellow stripes
base_class = [i for i in both_class if i not in novel_class]

model = dict(
    pretrained='data/demo/tiny_clip.pt',
    base_class=base_class,
    novel_class=novel_class,
    both_class=both_class,
    load_text_embedding='data/demo/text_embeddings.npy',
    backbone=dict(input_resolution=64, patch_size=8, width=64, layers=12, heads=4, output_dim=32,
                  drop_path_rate=0.0, num_tokens=5, prompt_dim=64),
    text_encoder=dict(transformer_width=32, transformer_heads=4, transformer_layers=2, embed_dim=32),
    decode_head=dict(img_size=64, in_channels=32, channels=32, embed_dims=32, num_heads=4),
    test_cfg=dict(mode='whole'))

img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(64, 64), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ])
]
dataset = dict(type='ZeroShotDataset', data_root=data_root, classes=classes,
               unseen_classes=novel_class, img_suffix='.jpg', seg_map_suffix='.png')
data = dict(
    samples_per_gpu=8,
    workers_per_gpu=0,
    persistent_workers=False,
    train=dict(**dataset, img_dir='images/train', ann_dir='annotations/train', pipeline=train_pipeline),
    val=dict(**dataset, img_dir='images/val', ann_dir='annotations/val', pipeline=test_pipeline),
    test=dict(**dataset, img_dir='images/val', ann_dir='annotations/val', pipeline=test_pipeline))

optimizer = dict(lr=5e-4)  # x10 on the backbone prompts and the head (paramwise_cfg)
lr_config = dict(warmup_iters=30, min_lr=1e-6)
runner = dict(type='AtomicIterBasedRunner', max_iters=900)
checkpoint_config = dict(by_epoch=False, interval=900)
evaluation = dict(interval=900, metric='mIoU')
log_config = dict(interval=100)
cudnn_benchmark = False
