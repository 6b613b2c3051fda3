"""``VPTCLIPVisionTransformer``: CLIP ViT with deep visual prompts and multi-level outputs."""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmseg.models.builder import BACKBONES

from ...utils.strict import strict_kwargs
from .clip_layers import LayerNorm, l2_normalize
from .clip_vit import CLIPVisionTransformer
from .features import VisualFeatures


@BACKBONES.register_module()
@strict_kwargs
class VPTCLIPVisionTransformer(CLIPVisionTransformer):
    """The Cascade-CLIP image encoder: CLIP ViT with deep visual prompts; ``forward`` gives
    :class:`VisualFeatures` whose ``levels`` are L2-normalised (B, output_dim, h, w) maps.

    Extra args:
        num_tokens: prompt tokens inserted after the class token; 0: the plain CLIP ViT.
        prompt_dim: width of the prompts (must equal ``width``).
        total_d_layer: blocks 1..total_d_layer get fresh (deep) prompts; 0: shallow prompts.
    """

    # not in CLIP files: initialised here (see __init__)
    NEW_PARAMETERS = ('prompt_embeddings', 'deep_prompt_embeddings', 'prompt_proj.', 'prompt_norm.',
                      'ln_layers.', 'proj_layers')

    def __init__(self, input_resolution: int = 512, patch_size: int = 16, width: int = 768,
                 layers: int = 12, heads: int = 12, output_dim: int = 512,
                 drop_path_rate: float = 0.1, out_indices: Sequence[int] = (5, 6, 7, 8, 9, 10),
                 get_embeddings: bool = True, num_tokens: int = 50, prompt_dim: int = 768,
                 total_d_layer: int = 11, pretrained: Optional[str] = None,
                 with_cp: bool = False, init_cfg=None):
        if not get_embeddings:
            raise ValueError('VPTCLIPVisionTransformer needs get_embeddings=True (the cascade '
                             'head uses the projected maps and the global embedding)')
        if prompt_dim != width:
            raise ValueError(f'prompt_dim ({prompt_dim}) must equal width ({width}): prompts '
                             f'are tokens of the transformer')
        if not 0 <= total_d_layer < layers:
            raise ValueError(f'total_d_layer must lie in [0, layers={layers}), got {total_d_layer}')
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f'num_tokens must be a whole number >= 0 (0: no prompts), got '
                             f'{num_tokens!r}')
        super().__init__(input_resolution=input_resolution, patch_size=patch_size, width=width,
                         layers=layers, heads=heads, output_dim=output_dim,
                         drop_path_rate=drop_path_rate, out_indices=out_indices,
                         pretrained=pretrained, get_embeddings=True, with_cp=with_cp,
                         init_cfg=init_cfg)
        self.num_tokens = num_tokens
        self.prompt_dim = prompt_dim
        self.total_d_layer = total_d_layer
        scale = width**-0.5
        # not in the CLIP file; the published configs keep them at this random init (frozen)
        self.ln_layers = nn.ModuleList(LayerNorm(width) for _ in self.out_indices)
        self.proj_layers = nn.Parameter(scale * torch.randn(len(self.out_indices), width, output_dim))

        if num_tokens == 0:
            # the plain CLIP ViT's tokens: no prompt parameters, no extra LayerNorm
            self.prompt_norm = nn.Identity()
        else:
            val = math.sqrt(6. / float(3 * patch_size * patch_size + prompt_dim))
            self.prompt_embeddings = nn.Parameter(
                torch.empty(1, num_tokens, prompt_dim).uniform_(-val, val))
            if total_d_layer > 0:
                self.deep_prompt_embeddings = nn.Parameter(
                    torch.empty(total_d_layer, num_tokens, prompt_dim).uniform_(-val, val))
            self.prompt_proj = nn.Linear(prompt_dim, prompt_dim)
            nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode='fan_out')
            self.prompt_norm = LayerNorm(prompt_dim, eps=1e-6)
            self.prompt_dropout = nn.Dropout(0.1)
        self._level = {idx: k for k, idx in enumerate(self.out_indices)}

    def _prompt(self, emb: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """(T, C) or (1, T, C) prompt parameters -> dropout(prompt_proj(.)) as (B, T, C)."""
        p = self.prompt_proj(emb.to(dtype)).reshape(1, self.num_tokens, -1)
        return self.prompt_dropout(p.expand(batch, -1, -1))  # independent dropout per image

    def _level_map(self, tokens: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
        """Patch tokens (B, h*w, C) of a kept block -> normalised (B, output_dim, h, w)."""
        t = self.ln_layers[k](self.prompt_norm(tokens))
        t = t @ self.proj_layers[k].to(t.dtype)
        return l2_normalize(self.to_map(t, h, w), dim=1)

    def forward(self, x: torch.Tensor) -> VisualFeatures:
        x, h, w = self.embed(x)
        B, n, T = x.shape[0], h * w, self.num_tokens
        if T:
            x = torch.cat([x[:, :1], self._prompt(self.prompt_embeddings, B, x.dtype), x[:, 1:]], dim=1)
        features = []
        for i, blk in enumerate(self.transformer.resblocks):
            if T and 1 <= i <= self.total_d_layer:
                deep = self._prompt(self.deep_prompt_embeddings[i - 1], B, x.dtype)
                x = torch.cat([x[:, :1], deep, x[:, 1 + T:]], dim=1)
            elif T and self.total_d_layer > 0 and i > self.total_d_layer and x.shape[1] != 1 + n:
                x = torch.cat([x[:, :1], x[:, -n:]], dim=1)  # prompts dropped after the deep layers
            x = self.run_block(blk, x)
            if i in self._level:
                # LayerNorms and projections act per token: only the patch tokens are needed
                features.append(self._level_map(x[:, -n:], self._level[i], h, w))
        x = torch.cat([x[:, :1], x[:, -n:]], dim=1)
        x = self.ln_post(self.prompt_norm(x)) @ self.proj.to(x.dtype)
        dense = l2_normalize(self.to_map(x[:, 1:], h, w), dim=1)
        return VisualFeatures(tuple(features), dense, l2_normalize(x[:, 0], dim=-1))
