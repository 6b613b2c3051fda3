log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook', by_epoch=False)])
dist_params = dict(backend='nccl')  # the tools switch to gloo on machines without GPUs
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
cudnn_benchmark = True
find_unused_parameters = False  # parameters the forward never uses are frozen (ATMSingleHeadSeg)
