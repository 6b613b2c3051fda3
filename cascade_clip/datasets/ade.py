from mmseg.datasets.ade import ADE20KDataset
from mmseg.datasets.builder import DATASETS

from .zero_shot import ZeroShotDataset


@DATASETS.register_module()
class ZeroADE20KDataset150(ZeroShotDataset):
    """ADE20K (SceneParsing, 150 classes) in MMSeg's ``ADEChallengeData2016`` layout:
    ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png``
    whose 0 is "other" (ignored: ``reduce_zero_label=True``, so ids 1-150 become 0-149)."""
    CLASSES = ADE20KDataset.CLASSES
    PALETTE = ADE20KDataset.PALETTE
    REDUCE_ZERO_LABEL = True
