from mmseg.datasets.builder import DATASETS
from mmseg.datasets.pascal_context import PascalContextDataset59

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroPascalVOCDataset59(ZeroShotDataset):
    """Pascal Context, 59 classes (0 = background is ignored: ``reduce_zero_label=True``)."""
    CLASSES = PascalContextDataset59.CLASSES
    PALETTE = PascalContextDataset59.PALETTE
    REDUCE_ZERO_LABEL = True
