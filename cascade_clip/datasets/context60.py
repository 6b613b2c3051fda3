from mmseg.datasets.builder import DATASETS
from mmseg.datasets.pascal_context import PascalContextDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroPascalContextDataset60(ZeroShotDataset):
    """Pascal Context, 60 classes (0 = background is a class) in MMSeg's layout:
    ``JPEGImages/*.jpg``, ``SegmentationClassContext/*.png`` (1-59: Context-59, 255 ignored)."""
    CLASSES = PascalContextDataset.CLASSES
    PALETTE = PascalContextDataset.PALETTE
    REDUCE_ZERO_LABEL = False
