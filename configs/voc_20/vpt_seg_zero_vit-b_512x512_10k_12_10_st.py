# Pascal VOC 2012 (aug), transductive (self-training). Start from the inductive checkpoint:
#   --load-from work_dirs/vpt_seg_zero_vit-b_512x512_20k_12_10/iter_20000.pth
_base_ = './vpt_seg_zero_vit-b_512x512_20k_12_10.py'
model = dict(self_training=True)
data = dict(samples_per_gpu=8)
runner = dict(max_iters=10000)
checkpoint_config = dict(interval=2500)
evaluation = dict(interval=2500)
