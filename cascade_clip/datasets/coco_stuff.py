from mmseg.datasets.builder import DATASETS
from mmseg.datasets.coco_stuff import COCOStuffDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroCOCOStuffDataset(ZeroShotDataset):
    """COCO-Stuff 164k, 171 classes in MMSeg's order; label maps ``*_labelTrainIds.png``."""
    CLASSES = COCOStuffDataset.CLASSES
    PALETTE = COCOStuffDataset.PALETTE
    SEG_MAP_SUFFIX = '_labelTrainIds.png'
