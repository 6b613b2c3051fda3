# Pascal Context 59, transductive (self-training). Start from the inductive checkpoint:
#   --load-from work_dirs/vpt_seg_zero_vit-b_512x512_40k_12_10/iter_40000.pth
_base_ = './vpt_seg_zero_vit-b_512x512_40k_12_10.py'
model = dict(self_training=True)
runner = dict(max_iters=20000)
checkpoint_config = dict(interval=5000)
evaluation = dict(interval=5000)
