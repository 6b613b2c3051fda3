"""Lowest layer: helpers that import nothing else from the package (drawing, safe
checkpoint reading, strict constructor arguments)."""
from .visualize import default_palette, draw_segmentation, legend_names

__all__ = ['draw_segmentation', 'default_palette', 'legend_names']
from .checkpoint import CheckpointError, safe_load  # noqa: E402
from .strict import strict_kwargs  # noqa: E402

__all__ += ['CheckpointError', 'safe_load', 'strict_kwargs']
