# Optimiser and learning-rate schedule of the published configs.
optimizer = dict(
    type='AdamW',
    lr=2e-5,
    weight_decay=0.01,
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=10.0),
            'text_encoder': dict(lr_mult=0.0),
            'norm': dict(decay_mult=0.),
            'ln': dict(decay_mult=0.),
            'head': dict(lr_mult=10.),
        }))
optimizer_config = dict()
lr_config = dict(policy='poly', power=0.9, min_lr=1e-6, by_epoch=False, warmup='linear',
                 warmup_iters=1500, warmup_ratio=1e-6)
