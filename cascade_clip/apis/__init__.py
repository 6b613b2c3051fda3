"""Top layer of the package: training, inference, loading and measuring helpers for the tools."""
from .checkpoint import load_weights
from .checks import check_model_matches_dataset
from ..core import collect_results
from .dist import MMDDP, exit_on_sigterm, init_distributed
from .inference import config_classes, init_model, read_image, segment_image
from .precision import resolve_precision
from .train import train_segmentor, wrap_model

__all__ = [
    'init_distributed', 'exit_on_sigterm', 'MMDDP', 'train_segmentor', 'wrap_model', 'init_model',
    'segment_image', 'read_image', 'config_classes', 'load_weights', 'check_model_matches_dataset',
    'resolve_precision', 'collect_results'
]
