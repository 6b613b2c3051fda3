from .dist import broadcast_module, init_distributed
from .train import train_segmentor, wrap_model

__all__ = ['init_distributed', 'broadcast_module', 'train_segmentor', 'wrap_model']
from .inference import init_model, read_image, segment_image, set_vocabulary  # noqa: E402

__all__ += ['init_model', 'set_vocabulary', 'segment_image', 'read_image']
