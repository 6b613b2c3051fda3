"""Tiny configuration of the real Cascade-CLIP structure, for tests (toy widths)."""
import copy
import os.path as osp

NUM_CLASSES = 6
BASE = [0, 1, 3, 4]
NOVEL = [2, 5]
NAMES = ['cat', 'dog', 'cow', 'tree', 'sky', 'road']


def tiny_model_cfg(self_training=False, base=BASE, novel=NOVEL, names=NAMES, **overrides):
    both = list(range(len(base) + len(novel)))
    cfg = dict(
        type='CascadeCLIP',
        pretrained=None,
        context_length=77,
        class_names=list(names),
        base_class=list(base),
        novel_class=list(novel),
        both_class=both,
        self_training=self_training,
        exclude_key='prompt',
        backbone=dict(
            type='VPTCLIPVisionTransformer', input_resolution=64, patch_size=16, width=64,
            layers=12, heads=4, output_dim=32, drop_path_rate=0.1,
            out_indices=[5, 6, 7, 8, 9, 10], get_embeddings=True, num_tokens=5, prompt_dim=64,
            total_d_layer=11),
        text_encoder=dict(type='CLIPTextEncoder', context_length=77, transformer_width=32,
                          transformer_heads=4, transformer_layers=2, embed_dim=32),
        decode_head=dict(
            type='ATMSingleHeadSeg', img_size=64, in_channels=32, seen_idx=list(base), all_idx=both,
            channels=32, num_classes=len(base), num_layers=3, num_heads=4, use_stages=7,
            embed_dims=32,
            loss_decode=dict(type='SegLossPlus', num_classes=len(base), dec_layers=3,
                             mask_weight=100.0, dice_weight=1.0, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    cfg = copy.deepcopy(cfg)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


def build(cfg):
    from mmseg.models import build_segmentor
    import cascade_clip  # noqa: F401
    model = build_segmentor(cfg)
    model.init_weights()
    return model


def train_loss(model, img, img_metas, gt):
    """The loss of one batch in one process (``train_step``'s: each term over its count)."""
    return model.train_step(dict(img=img, img_metas=img_metas, gt_semantic_seg=gt), None)['loss']


def write_tiny_files(d, embedding_file=None, test_cfg=None, img_scale=(64, 64)):
    """A tiny config of the real structure (test pipeline resizing to ``img_scale``) and its
    checkpoint, in folder ``d``: (config path, checkpoint path)."""
    import torch
    from mmcv.runner import save_checkpoint
    torch.manual_seed(0)
    extra = dict(test_cfg=test_cfg) if test_cfg else {}
    model_cfg = tiny_model_cfg(load_text_embedding=embedding_file, **extra)
    cfg_text = f'''custom_imports = dict(imports=['cascade_clip'], allow_failed_imports=False)
model = {model_cfg!r}
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
data = dict(test=dict(type='ZeroShotDataset', classes={model_cfg["class_names"]!r}, img_dir='x',
    pipeline=[dict(type='LoadImageFromFile'),
              dict(type='MultiScaleFlipAug', img_scale={img_scale!r}, flip=False, transforms=[
                  dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                  dict(type='Normalize', **img_norm_cfg), dict(type='ImageToTensor', keys=['img']),
                  dict(type='Collect', keys=['img'])])]))
'''
    cfg = osp.join(d, 'tiny_cfg.py')
    with open(cfg, 'w') as f:
        f.write(cfg_text)
    model = build(dict(model_cfg, load_text_embedding=None))
    ckpt = osp.join(d, 'tiny.pth')
    save_checkpoint(model, ckpt, meta=dict(CLASSES=model_cfg['class_names']))
    return cfg, ckpt


def write_demo_data(root, num_train, num_val):
    """The offline demo's data at test size in ``root``: synthetic dataset, text embeddings
    (width 32) and a tiny CLIP archive (``tiny_clip.pt``)."""
    import numpy as np
    from tools.demo_data import synthetic
    from tools.demo_data.tiny_clip import save_tiny_clip
    synthetic.make_dataset(root, num_train=num_train, num_val=num_val)
    np.save(osp.join(root, 'text_embeddings.npy'), synthetic.text_embeddings(32))
    save_tiny_clip(osp.join(root, 'tiny_clip.pt'), embed_dim=32, image_resolution=64,
                   vision_patch_size=8, vision_width=64, vision_layers=12, vision_heads=4)
    return root
