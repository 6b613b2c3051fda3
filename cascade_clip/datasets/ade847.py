from mmseg.datasets.builder import DATASETS

from ..utils.visualize import default_palette
from .evaluation_only import WideLabelEvaluationDataset
from .names import ADE847


@DATASETS.register_module()
class ZeroADE20KDataset847(WideLabelEvaluationDataset):
    """ADE20K-847 (full ADE20K vocabulary), evaluation only, in the layout of the
    detectron2-based open-vocabulary projects: ``ADE20K_2021_17_01/images_detectron2/
    validation/*.jpg`` and ``annotations_detectron2/validation/*.tif`` (uint16 ids 0-846,
    65535 ignored), made by ``tools/convert_datasets/ade20k_847.py``."""
    CLASSES = tuple(name for name, _ in ADE847)
    PALETTE = [list(map(int, c)) for c in default_palette(len(CLASSES))]
