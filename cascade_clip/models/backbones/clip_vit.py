"""``CLIPVisionTransformer``: CLIP's ViT image encoder with multi-level outputs."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.runner import BaseModule
from mmcv.utils import print_log
from mmseg.models.builder import BACKBONES
from mmseg.utils import get_root_logger

from ...clip.checkpoint import convert_clip_visual, load_clip_state_dict, resize_pos_embed
from ...utils.strict import strict_kwargs
from .clip_layers import LayerNorm, Transformer, check_covers, check_width, l2_normalize
from .features import VisualFeatures


@BACKBONES.register_module()
@strict_kwargs
class CLIPVisionTransformer(BaseModule):
    """CLIP ViT without prompts; ``forward`` gives :class:`VisualFeatures` with the raw
    (B, width, h, w) ``levels`` and, with ``get_embeddings``, the L2-normalised embeddings.

    Args:
        input_resolution: side in pixels of the position-embedding grid (resized for others).
        patch_size, width, layers, heads, output_dim: CLIP's ViT sizes.
        drop_path_rate: stochastic depth of the last block (rising linearly from 0).
        out_indices: blocks whose outputs are returned.
        get_embeddings: also compute the projected dense and global embeddings.
        pretrained: a CLIP file (see :func:`cascade_clip.clip.load_clip_state_dict`).
        with_cp: in training, each block under non-reentrant activation checkpointing.
        style: (published configs) MMSeg's ResNet argument, accepted and unused.
    """

    def __init__(self, input_resolution: int = 224, patch_size: int = 32, width: int = 768,
                 layers: int = 12, heads: int = 12, output_dim: int = 512,
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] = (3, 5, 7, 11),
                 pretrained: Optional[str] = None, get_embeddings: bool = False,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if input_resolution % patch_size:
            raise ValueError(f'input_resolution {input_resolution} is not a multiple of '
                             f'patch_size {patch_size}')
        out_indices = [int(i) for i in out_indices]
        if any(not 0 <= i < layers for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must lie in [0, {layers}) (layers={layers})')
        self.pretrained = pretrained
        self.input_resolution = input_resolution
        self.patch_size = patch_size
        self.width = width
        self.output_dim = output_dim
        self.num_layers = layers
        self.out_indices = out_indices
        self.get_embeddings = get_embeddings
        self.with_cp = with_cp
        self.spatial_size = input_resolution // patch_size

        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.spatial_size**2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path_rate=drop_path_rate)
        if get_embeddings:
            self.ln_post = LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    # accepted and dropped (cascade_clip.utils.strict.PUBLISHED_KEY_VALUES gives the reason)
    PUBLISHED_KEYS = ('style', )

    # parameters that CLIP files do not have (the prompted subclass adds some)
    NEW_PARAMETERS: Tuple[str, ...] = ()

    def init_weights(self, pretrained: Optional[str] = None) -> None:
        """Load the image tower of a CLIP file; every CLIP parameter of the model must be in it."""
        pretrained = pretrained or self.pretrained
        if not isinstance(pretrained, str):
            return
        state_dict = convert_clip_visual(load_clip_state_dict(pretrained))
        if not state_dict:
            raise ValueError(f'{pretrained} has no image-encoder keys ("visual.*")')
        if not self.get_embeddings:  # the joint-space projection is not part of this model
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(('ln_post.', 'proj'))}
        check_width(state_dict, 'conv1.weight', self.width, 0, pretrained, 'visual width')
        check_width(state_dict, 'conv1.weight', self.patch_size, 2, pretrained, 'patch size')
        if 'positional_embedding' in state_dict:
            pos = state_dict['positional_embedding']
            if pos.shape != self.positional_embedding.shape:
                print_log(f'resizing positional_embedding {tuple(pos.shape)} -> '
                          f'{tuple(self.positional_embedding.shape)}', logger=get_root_logger())
                state_dict['positional_embedding'] = resize_pos_embed(
                    pos, (self.spatial_size, self.spatial_size))
        check_covers(self, state_dict, pretrained, 'image encoder', self.NEW_PARAMETERS)
        self.load_state_dict(state_dict, strict=False)
        print_log(f'{type(self).__name__}: loaded {pretrained} (all CLIP parameters; new ones kept '
                  f'at their initialisation: {", ".join(self.NEW_PARAMETERS) or "none"})',
                  logger=get_root_logger())

    def pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + h*w, C): class slot pos[0] + class_embedding, spatial grid resized to (h, w)."""
        pos = self.positional_embedding
        cls_pos = pos[:1] + self.class_embedding  # the class embedding is added twice (as published)
        spatial = resize_pos_embed(pos, (h, w))[1:]
        return torch.cat([cls_pos, spatial], dim=0).unsqueeze(0)

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """Image (B, 3, H, W) -> ln_pre(tokens + pos) (B, 1 + h*w, C), h, w."""
        x = self.conv1(x)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.pos_embed(h, w).to(x.dtype)
        return self.ln_pre(x), h, w

    def run_block(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One transformer block, (B, L, C) -> (B, L, C); checkpointed under ``with_cp``."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            # non-reentrant: gradients reach the (trainable) prompt inputs of frozen blocks
            return cp.checkpoint(blk, x, use_reentrant=False, preserve_rng_state=True)
        return blk(x)

    @staticmethod
    def to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, h*w, C) -> (B, C, h, w)."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)

    def forward(self, x: torch.Tensor) -> VisualFeatures:
        x, h, w = self.embed(x)
        levels = []
        for i, blk in enumerate(self.transformer.resblocks):
            x = self.run_block(blk, x)
            if i in self.out_indices:
                levels.append(self.to_map(x[:, 1:], h, w).contiguous())
        if not self.get_embeddings:
            return VisualFeatures(tuple(levels))
        x = self.ln_post(x) @ self.proj
        dense = l2_normalize(self.to_map(x[:, 1:], h, w), dim=1)
        return VisualFeatures(tuple(levels), dense, l2_normalize(x[:, 0], dim=-1))
