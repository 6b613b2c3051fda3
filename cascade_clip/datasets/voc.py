from mmseg.datasets.builder import DATASETS
from mmseg.datasets.voc import PascalVOCDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroPascalVOCDataset20(ZeroShotDataset):
    """Pascal VOC 2012 (+aug), 20 classes without background (``reduce_zero_label=True``)."""
    CLASSES = PascalVOCDataset.CLASSES[1:]
    PALETTE = PascalVOCDataset.PALETTE[1:]
    REDUCE_ZERO_LABEL = True
