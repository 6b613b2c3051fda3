"""``CLIPTextEncoder``: CLIP's text transformer (frozen in Cascade-CLIP)."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.runner import BaseModule
from mmcv.utils import print_log
from mmseg.models.builder import BACKBONES
from mmseg.utils import get_root_logger

from ...clip.checkpoint import convert_clip_text, load_clip_state_dict
from ...utils.strict import strict_kwargs
from .clip_layers import LayerNorm, Transformer, check_covers, check_width


@BACKBONES.register_module()
@strict_kwargs
class CLIPTextEncoder(BaseModule):
    """CLIP text encoder, with OpenAI CLIP's parameter names; ``style`` is accepted and unused.

    ``forward(text)``: token ids (N, L <= context_length), each row ending with the end-of-text
    token (the largest id) -> (N, embed_dim) text features (not normalised).
    """

    # accepted and dropped (cascade_clip.utils.strict.PUBLISHED_KEY_VALUES gives the reason)
    PUBLISHED_KEYS = ('style', )

    def __init__(self, context_length: int = 77, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8,
                 transformer_layers: int = 12, embed_dim: int = 512,
                 pretrained: Optional[str] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.pretrained = pretrained
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.width = transformer_width
        self.embed_dim = embed_dim
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                       causal=True)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self._random_init()

    def _random_init(self) -> None:
        """CLIP's ``initialize_parameters`` for the text tower."""
        width, layers = self.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (width**-0.5) * ((2 * layers)**-0.5)
        attn_std = width**-0.5
        fc_std = (2 * width)**-0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def init_weights(self, pretrained: Optional[str] = None) -> None:
        """Load the text tower of a CLIP file; it must give every parameter of the encoder."""
        pretrained = pretrained or self.pretrained
        if isinstance(pretrained, str):
            self.load_clip(load_clip_state_dict(pretrained), pretrained)

    def load_clip(self, clip_state_dict: dict, pretrained: str) -> None:
        """Load the text tower of a CLIP state dict (OpenAI's layout) read from ``pretrained``."""
        state_dict = convert_clip_text(clip_state_dict, self.context_length)
        if 'token_embedding.weight' not in state_dict:
            raise ValueError(f'{pretrained} has no text-encoder keys ("token_embedding.weight", '
                             f'"transformer.*")')
        check_width(state_dict, 'token_embedding.weight', self.width, 1, pretrained, 'text width')
        check_width(state_dict, 'text_projection', self.embed_dim, 1, pretrained,
                    'text embedding dim')
        check_covers(self, state_dict, pretrained, 'text encoder')
        self.load_state_dict(state_dict, strict=False)
        print_log(f'CLIPTextEncoder: loaded {pretrained}', logger=get_root_logger())

    @classmethod
    def from_clip(cls, path: str, heads: Optional[int] = None,
                  context_length: Optional[int] = None) -> 'CLIPTextEncoder':
        """A text encoder sized from a CLIP file and loaded from it, in eval mode (``heads``:
        CLIP's width // 64 unless given)."""
        sd = load_clip_state_dict(path)
        if 'token_embedding.weight' not in sd:
            raise ValueError(f'{path} has no text tower ("token_embedding.weight")')
        width = sd['token_embedding.weight'].shape[1]
        layers = len({k.split('.')[2] for k in sd if k.startswith('transformer.resblocks.')})
        enc = cls(context_length=context_length or sd['positional_embedding'].shape[0],
                  vocab_size=sd['token_embedding.weight'].shape[0], transformer_width=width,
                  transformer_heads=heads or max(1, width // 64), transformer_layers=layers,
                  embed_dim=sd['text_projection'].shape[1], pretrained=path)
        enc.load_clip(sd, path)  # the file read once
        return enc.eval()

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        eot = text.argmax(dim=-1)
        # causal attention: the padding after the longest text never reaches an end-of-text output
        length = int(eot.max()) + 1
        text = text[:, :length]
        x = self.token_embedding(text) + self.positional_embedding[:length].to(
            self.token_embedding.weight.dtype)
        x = self.transformer(x)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.text_projection.to(x.dtype)
