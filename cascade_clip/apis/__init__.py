"""Top layer of the package: training, inference, loading and measuring helpers for the tools."""
from .checkpoint import load_weights
from .checks import check_model_matches_dataset
from .config_checks import check_config, check_overrides
from .dist import MMDDP, exit_on_sigterm, init_distributed
from .inference import config_classes, init_model, read_image, segment_image
from .optimizer_hook import optimizer_hook_config, resolve_precision, set_total_batch
from .train import train_segmentor, wrap_model

__all__ = [
    'init_distributed', 'exit_on_sigterm', 'MMDDP', 'train_segmentor', 'wrap_model', 'init_model',
    'segment_image', 'read_image', 'config_classes', 'load_weights', 'check_model_matches_dataset',
    'check_config', 'check_overrides', 'optimizer_hook_config', 'resolve_precision',
    'set_total_batch'
]
