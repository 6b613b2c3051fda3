"""Cascade-CLIP (ICML 2024) as an MMSegmentation 0.x plugin; ``import cascade_clip`` registers
the models and datasets with MMSeg's registries."""
from .clip import tokenize
from .version import __version__
from . import models  # noqa: F401  (registers backbones, heads, losses, segmentors)
from . import datasets  # noqa: F401  (registers datasets)
from . import core  # noqa: F401  (registers the runner and hooks)

__all__ = ['tokenize', '__version__']
