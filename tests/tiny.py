"""Tiny configuration of the real Cascade-CLIP structure, for tests (toy widths)."""
import copy

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
