"""Lowest layer: helpers that import nothing else from the package (drawing)."""
from .visualize import default_palette, draw_segmentation, legend_names

__all__ = ['draw_segmentation', 'default_palette', 'legend_names']
