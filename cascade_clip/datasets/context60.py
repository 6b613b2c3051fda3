from mmseg.datasets.builder import DATASETS
from mmseg.datasets.pascal_context import PascalContextDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroPascalContextDataset60(ZeroShotDataset):
    """Pascal Context, 60 classes: 0 = background is a class (``reduce_zero_label=False``).

    MMSeg's ``PascalContextDataset`` layout and names: ``JPEGImages/*.jpg``,
    ``SegmentationClassContext/*.png`` (0 background, 1-59 the Context-59 classes in the same
    order, 255 ignored), split files under ``ImageSets/SegmentationContext/``.
    """
    CLASSES = PascalContextDataset.CLASSES
    PALETTE = PascalContextDataset.PALETTE
    REDUCE_ZERO_LABEL = False
