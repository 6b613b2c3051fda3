from .clip_text import CLIPTextEncoder
from .features import VisualFeatures
from .clip_vit import CLIPVisionTransformer
from .vpt_clip_vit import VPTCLIPVisionTransformer

__all__ = ['VisualFeatures', 'CLIPVisionTransformer', 'VPTCLIPVisionTransformer', 'CLIPTextEncoder']
