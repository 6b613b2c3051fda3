_base_ = './adamw_poly.py'
runner = dict(type='AtomicIterBasedRunner', max_iters=20000)
checkpoint_config = dict(by_epoch=False, interval=5000)
evaluation = dict(interval=5000, metric='mIoU')
