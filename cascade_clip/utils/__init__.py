"""Lowest layer: helpers that import nothing else from the package (drawing, safe
checkpoint reading, strict constructor arguments)."""
from .visualize import default_palette, draw_segmentation, legend_names
from .checkpoint import CheckpointError, safe_load
from .strict import strict_kwargs

__all__ = ['draw_segmentation', 'default_palette', 'legend_names', 'CheckpointError', 'safe_load',
           'strict_kwargs']
