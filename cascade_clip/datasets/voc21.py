from mmseg.datasets.builder import DATASETS
from mmseg.datasets.voc import PascalVOCDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroPascalVOCDataset21(ZeroShotDataset):
    """Pascal VOC 2012 with background as a class (21 classes, "VOC-20b" / "PAS-21"): the
    ``SegmentationClass/*.png`` maps as stored (0 background, 1-20 the objects, 255 ignored);
    background is predicted from its own text embedding like the others."""
    CLASSES = PascalVOCDataset.CLASSES
    PALETTE = PascalVOCDataset.PALETTE
    REDUCE_ZERO_LABEL = False
