_base_ = './adamw_poly.py'
runner = dict(type='AtomicIterBasedRunner', max_iters=40000)
checkpoint_config = dict(by_epoch=False, interval=10000)
evaluation = dict(interval=10000, metric='mIoU')
