from .clip_text import CLIPTextEncoder
from .clip_vit import CLIPVisionTransformer
from .vpt_clip_vit import VPTCLIPVisionTransformer

__all__ = ['CLIPVisionTransformer', 'VPTCLIPVisionTransformer', 'CLIPTextEncoder']
