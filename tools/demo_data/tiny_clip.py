"""Tiny CLIP checkpoints in OpenAI's format, for tests and the offline demo.

The module tree has OpenAI CLIP's attribute names, so ``torch.jit.script(...).save(path)``
writes an archive whose weights (read by ``cascade_clip.utils.torchscript``) have the same keys
as ``ViT-B-16.pt`` (``visual.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight``,
...). Its forward is a no-op: only the weights matter.
"""
from collections import OrderedDict
from typing import Dict

import torch
import torch.nn as nn


class _Block(nn.Module):

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([('c_fc', nn.Linear(width, width * 4)), ('gelu', nn.GELU()),
                         ('c_proj', nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Transformer(nn.Module):

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Visual(nn.Module):

    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, out_dim: int):
        super().__init__()
        grid = resolution // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out_dim) * width**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TinyOpenAICLIP(nn.Module):
    """OpenAI CLIP's parameter layout at any size (random weights, LayerNorms perturbed)."""

    def __init__(self,
                 embed_dim: int = 32,
                 image_resolution: int = 64,
                 vision_patch_size: int = 16,
                 vision_width: int = 64,
                 vision_layers: int = 12,
                 vision_heads: int = 4,
                 context_length: int = 77,
                 vocab_size: int = 49408,
                 transformer_width: int = 32,
                 transformer_heads: int = 4,
                 transformer_layers: int = 2):
        super().__init__()
        self.visual = _Visual(image_resolution, vision_patch_size, vision_width, vision_layers,
                              vision_heads, embed_dim)
        self.transformer = _Transformer(transformer_width, transformer_layers, transformer_heads)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, transformer_width) * 0.01)
        self.ln_final = nn.LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.randn(transformer_width, embed_dim) * transformer_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))
        with torch.no_grad():  # non-trivial LayerNorms so that tests see them
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)
                elif isinstance(m, nn.MultiheadAttention):
                    m.in_proj_bias.normal_(0, 0.1)
                    m.out_proj.bias.normal_(0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_tiny_clip(seed: int = 0, **kwargs) -> TinyOpenAICLIP:
    torch.manual_seed(seed)
    return TinyOpenAICLIP(**kwargs)


def save_tiny_clip(path: str, torchscript: bool = True, seed: int = 0, **kwargs) -> Dict[str, torch.Tensor]:
    """Write a tiny CLIP file (TorchScript archive as OpenAI's, or a plain state dict).

    Returns its state dict.
    """
    model = make_tiny_clip(seed, **kwargs).eval()
    if torchscript:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch.jit.script's deprecation notice
            torch.jit.script(model).save(path)
    else:
        torch.save(model.state_dict(), path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
