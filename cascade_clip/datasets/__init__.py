from .ade import ZeroADE20KDataset150
from .coco_stuff import ZeroCOCOStuffDataset
from .context import ZeroPascalVOCDataset59
from .context60 import ZeroPascalContextDataset60
from .voc import ZeroPascalVOCDataset20
from .zero_shot import CheckSegMap, ZeroShotDataset, harmonic_iou

__all__ = [
    'ZeroShotDataset', 'ZeroCOCOStuffDataset', 'ZeroPascalVOCDataset20', 'ZeroPascalVOCDataset59',
    'ZeroPascalContextDataset60', 'ZeroADE20KDataset150', 'CheckSegMap', 'harmonic_iou'
]
