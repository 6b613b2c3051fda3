from .ade import ZeroADE20KDataset150
from .ade847 import ZeroADE20KDataset847
from .coco_stuff import ZeroCOCOStuffDataset
from .context import ZeroPascalVOCDataset59
from .context459 import ZeroPascalContextDataset459
from .context60 import ZeroPascalContextDataset60
from .voc import ZeroPascalVOCDataset20
from .voc21 import ZeroPascalVOCDataset21
from .wide_labels import LoadWideAnnotations
from .zero_shot import CheckSegMap, ZeroShotDataset, harmonic_iou

__all__ = [
    'ZeroShotDataset', 'ZeroCOCOStuffDataset', 'ZeroPascalVOCDataset20', 'ZeroPascalVOCDataset59',
    'ZeroPascalContextDataset60', 'ZeroADE20KDataset150', 'ZeroADE20KDataset847', 'ZeroPascalContextDataset459',
    'ZeroPascalVOCDataset21', 'LoadWideAnnotations', 'CheckSegMap', 'harmonic_iou'
]
