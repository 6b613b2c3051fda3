from mmseg.datasets.builder import DATASETS
from mmseg.datasets.coco_stuff import COCOStuffDataset

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroCOCOStuffDataset(ZeroShotDataset):
    """COCO-Stuff 164k, 171 classes in MMSeg's order; label maps ``*_labelTrainIds.png``."""
    CLASSES = COCOStuffDataset.CLASSES
    PALETTE = COCOStuffDataset.PALETTE

    def __init__(self, **kwargs):
        kwargs.setdefault('img_suffix', '.jpg')
        kwargs.setdefault('seg_map_suffix', '_labelTrainIds.png')
        super().__init__(**kwargs)
