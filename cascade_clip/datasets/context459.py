from mmseg.datasets.builder import DATASETS

from ..utils.visualize import default_palette
from .evaluation_only import WideLabelEvaluationDataset
from .names import PC459


@DATASETS.register_module()
class ZeroPascalContextDataset459(WideLabelEvaluationDataset):
    """Pascal Context-459 (full vocabulary), evaluation only: VOC2010 ``JPEGImages/*.jpg`` and
    ``annotations_detectron2/pc459_val/*.tif`` (uint16 ids 0-458, unlabelled pixels 65535),
    made by ``tools/convert_datasets/pascal_context_459.py``."""
    CLASSES = PC459
    PALETTE = [list(map(int, c)) for c in default_palette(len(CLASSES))]
