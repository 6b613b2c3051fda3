_base_ = './adamw_poly.py'
runner = dict(type='AtomicIterBasedRunner', max_iters=80000)
checkpoint_config = dict(by_epoch=False, interval=20000)
evaluation = dict(interval=20000, metric='mIoU')
