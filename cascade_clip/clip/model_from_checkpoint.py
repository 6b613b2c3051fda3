"""Build this project's CLIP text encoder with the sizes read off a CLIP checkpoint."""
from typing import Optional

from .checkpoint import load_clip_state_dict


def text_encoder_from_clip(path: str, heads: Optional[int] = None, context_length: Optional[int] = None):
    """A ``CLIPTextEncoder`` sized from the checkpoint and loaded from it.

    Width, layers, embedding size and context length come from the tensors; the number of
    heads follows CLIP's rule width // 64 unless given.
    """
    from ..models.backbones import CLIPTextEncoder
    sd = load_clip_state_dict(path)
    if 'token_embedding.weight' not in sd:
        raise ValueError(f'{path} has no text tower ("token_embedding.weight")')
    width = sd['token_embedding.weight'].shape[1]
    layers = len({k.split('.')[2] for k in sd if k.startswith('transformer.resblocks.')})
    heads = heads or max(1, width // 64)
    ctx = context_length or sd['positional_embedding'].shape[0]
    enc = CLIPTextEncoder(context_length=ctx, vocab_size=sd['token_embedding.weight'].shape[0],
                          transformer_width=width, transformer_heads=heads,
                          transformer_layers=layers, embed_dim=sd['text_projection'].shape[1],
                          pretrained=path)
    enc.init_weights()
    return enc.eval()
