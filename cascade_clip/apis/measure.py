"""Helpers shared by tools/get_flops.py, tools/get_fps.py and tools/benchmark.py."""
import os.path as osp
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.utils import Config, print_log
from mmseg.models import build_segmentor


def build_model_for_measurement(cfg: Config, checkpoint: Optional[str] = None, logger=None):
    """A test-mode model from ``cfg``; random weights without a checkpoint and random class
    embeddings without the config's text-embedding file (measurements do not depend on them)."""
    from .checkpoint import load_weights
    from .inference import config_classes
    name = getattr(cfg, 'filename', None)
    cfg = cfg.copy()
    cfg.model.pretrained = None
    cfg.model.train_cfg = None
    emb_file = cfg.model.get('load_text_embedding')
    random_text = bool(emb_file) and not osp.isfile(emb_file)
    if random_text:
        print_log(f'{emb_file} not found: using random class embeddings for the measurement', logger)
        cfg.model.load_text_embedding = None
    if cfg.model.get('class_names') is None:
        cfg.model.class_names = config_classes(cfg)
    model = build_segmentor(cfg.model, test_cfg=cfg.get('test_cfg'))
    if checkpoint:
        load_weights(model, checkpoint, config=name, strict=True, logger=logger)
    if random_text or (not checkpoint and not emb_file):
        g = torch.Generator().manual_seed(0)
        emb = torch.randn(model.num_classes, model.decode_head.embed_dims, generator=g)
        model.set_vocabulary(model.class_names, model.base_class, F.normalize(emb, dim=-1))
    return model.eval()


def sdpa_flop_jit(inputs, outputs):
    """fvcore handle for aten::scaled_dot_product_attention: q·kᵀ and attn·v as two matmuls
    (B·H·L·S·D multiply-adds each, fvcore's convention for matmul)."""
    from fvcore.nn.jit_handles import get_shape
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, L, D = q
    S = k[-2]
    n = 1
    for b in batch:
        n *= b
    return 2 * n * L * S * D


class EncodeDecode(nn.Module):
    """Traceable wrapper: image (B, 3, H, W) -> class scores (B, K, H, W)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, img):
        return self.model.encode_decode(img, None)


def count_flops(model, shape: Tuple[int, int]) -> Tuple[float, dict]:
    """fvcore FLOPs (multiply-adds) of one ``shape`` crop through ``encode_decode``."""
    from fvcore.nn import FlopCountAnalysis
    device = next(model.parameters()).device
    img = torch.randn(1, 3, *shape, device=device)
    model.class_embeddings()  # computed outside the trace
    with torch.no_grad():
        fca = FlopCountAnalysis(EncodeDecode(model), (img, ))
        fca.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        total = fca.total()
        by_module = dict(fca.by_module())
        by_mod_op = fca.by_module_and_operator()
    # what fvcore reports for the published code: it does not see the q·kᵀ and attn·v products
    # inside its image encoder's nn.MultiheadAttention, and counts its resize of the score maps
    # as an interpolation (4 per output value), which this project computes as matrix products
    bb_attn = by_mod_op.get('model.backbone', {}).get('scaled_dot_product_attention', 0)
    size = model.decode_head.image_size
    by_module['comparable'] = (total - bb_attn - by_module.get('model.decode_head.score_resize', 0)
                               + 4 * model.num_classes * size * size)
    return total, by_module


def count_params(model) -> Tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX); without them bf16
    is emulated (8x slower than fp32 on an AVX2 EPYC)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def warn_if_slow_amp(device: str, amp: Optional[str], logger=None) -> None:
    if amp == 'bf16' and str(device).startswith('cpu') and not cpu_has_fast_bf16():
        print_log('bf16 autocast on a CPU without AVX-512 BF16 / AMX: matrix products are '
                  'emulated and slower than fp32 here; use fp32 on this machine', logger,
                  level=30)
