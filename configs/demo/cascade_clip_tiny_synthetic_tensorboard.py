# The offline demo with its curves also in TensorBoard, written to WORK_DIR/tf_logs:
#   python tools/train.py configs/demo/cascade_clip_tiny_synthetic_tensorboard.py --work-dir work_dirs/tb
#   tensorboard --logdir work_dirs/tb/tf_logs
# (a config file, as --cfg-options cannot give log_config.hooks a list of dicts)
_base_ = ['./cascade_clip_tiny_synthetic.py']
log_config = dict(hooks=[dict(type='TextLoggerHook', by_epoch=False),
                         dict(type='TensorboardLoggerHook', by_epoch=False)])
