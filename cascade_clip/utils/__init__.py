from .tiny_clip import TinyOpenAICLIP, make_tiny_clip, save_tiny_clip
from .visualize import default_palette, draw_segmentation, legend_names

__all__ = ['TinyOpenAICLIP', 'make_tiny_clip', 'save_tiny_clip', 'draw_segmentation',
           'default_palette', 'legend_names']
