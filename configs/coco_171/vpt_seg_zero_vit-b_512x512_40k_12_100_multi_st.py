# COCO-Stuff 164k, transductive (self-training). Start from the inductive checkpoint:
#   --load-from work_dirs/vpt_seg_zero_vit-b_512x512_80k_12_100_multi/iter_80000.pth
_base_ = './vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py'
model = dict(self_training=True)
runner = dict(max_iters=40000)
checkpoint_config = dict(interval=10000)
evaluation = dict(interval=10000)
