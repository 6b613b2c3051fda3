_base_ = './adamw_poly.py'
runner = dict(type='AtomicIterBasedRunner', max_iters=10000)
checkpoint_config = dict(by_epoch=False, interval=2500)
evaluation = dict(interval=2500, metric='mIoU')
