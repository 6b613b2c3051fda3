"""CLIP transformer blocks with CLIP's parameter names, batch-first (B, L, C), fused attention."""
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (as CLIP does) whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """``x + DropPath(attn(ln_1(x)))``, then ``x + DropPath(mlp(ln_2(x)))``."""

    def __init__(self, d_model: int, n_head: int, drop_path: float = 0., causal: bool = False):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f'width {d_model} is not divisible by heads {n_head}')
        self.attn = nn.MultiheadAttention(d_model, n_head)  # for its parameter names only
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict([('c_fc', nn.Linear(d_model, d_model * 4)), ('gelu', QuickGELU()),
                         ('c_proj', nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = LayerNorm(d_model)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.n_head = n_head
        self.causal = causal

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention. x: (B, L, C) -> (B, L, C)."""
        B, L, C = x.shape
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        qkv = qkv.reshape(B, L, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=self.causal)
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.attn.out_proj(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        x = x + self.drop_path(self.mlp(self.ln_2(x)))
        return x


class Transformer(nn.Module):
    """``resblocks``: CLIP blocks with stochastic depth rising linearly 0 -> drop_path_rate."""

    def __init__(self, width: int, layers: int, heads: int, drop_path_rate: float = 0.,
                 causal: bool = False):
        super().__init__()
        self.width = width
        self.layers = layers
        dpr = torch.linspace(0, drop_path_rate, layers, device='cpu').tolist()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, dpr[i], causal) for i in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / ||x|| along ``dim`` (as CLIP: no epsilon, so a zero vector gives NaN, never silently 0)."""
    return x / x.norm(dim=dim, keepdim=True)


def check_covers(model: nn.Module, state_dict: dict, path: Optional[str], tower: str,
                 new_prefixes: Sequence[str] = ()) -> None:
    """Raise ValueError (naming blocks by index) unless ``state_dict`` (a CLIP tower) gives every
    parameter of ``model`` but those starting with ``new_prefixes``, and nothing else."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(tuple(new_prefixes))]
    surplus = [k for k in state_dict if k not in own]
    if not missing and not surplus:
        return

    def blocks(keys):
        return sorted({int(k.split('.')[2]) for k in keys if k.startswith('transformer.resblocks.')})

    def describe(keys, what):
        idx = blocks(keys)
        other = [k for k in keys if not k.startswith('transformer.resblocks.')]
        parts = ([f'blocks {idx}'] if idx else []) + other[:5] + (['...'] if len(other) > 5 else [])
        return f'{what}: ' + ', '.join(parts)

    n_file = len(blocks(state_dict))
    n_model = len(blocks(own))
    parts = [describe(missing, 'missing from the file')] if missing else []
    parts += [describe(surplus, 'in the file but not in the model')] if surplus else []
    raise ValueError(f'CLIP checkpoint {path} does not cover the {tower} of the config (the file '
                     f'has {n_file} blocks, the config {n_model}): ' + '; '.join(parts)
                     + '. Use the CLIP file that matches the model config')


def check_width(state_dict: dict, key: str, expected: int, dim: int, path: Optional[str],
                what: str) -> None:
    """Raise a clear error when the checkpoint's width differs from the config's."""
    if key in state_dict and state_dict[key].shape[dim] != expected:
        raise ValueError(f'CLIP checkpoint {path} has {what} {state_dict[key].shape[dim]} '
                         f'({key} {tuple(state_dict[key].shape)}), but the config asks for '
                         f'{expected}: use the CLIP file that matches the model config')
