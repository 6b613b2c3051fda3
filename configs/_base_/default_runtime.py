log_config = dict(
    interval=50,
    hooks=[
        dict(type='TextLoggerHook', by_epoch=False),  # WORK_DIR/<timestamp>.log and .log.json
        # curves in TensorBoard, written to WORK_DIR/tf_logs (tensorboard --logdir WORK_DIR/tf_logs);
        # e.g. configs/demo/cascade_clip_tiny_synthetic_tensorboard.py
        # dict(type='TensorboardLoggerHook', by_epoch=False),
        # Weights & Biases (pip install wandb; wandb login): uploads the curves, and at the end
        # the work dir's .log, .log.json and .py files unless log_artifact=False; commit=False
        # keeps an evaluation logged at the iteration of a training line (wandb drops a second
        # commit at the same step)
        # dict(type='WandbLoggerHook', by_epoch=False, commit=False,
        #      init_kwargs=dict(project='cascade-clip')),
    ])
dist_params = dict(backend='nccl')  # the tools switch to gloo on machines without GPUs
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
cudnn_benchmark = True
find_unused_parameters = False  # parameters the forward never uses are frozen (ATMSingleHeadSeg)
