"""Base of the large-vocabulary evaluation sets (ADE20K-847, Pascal Context-459)."""
from typing import List

from .wide_labels import LoadWideAnnotations
from .zero_shot import ZeroShotDataset

WIDE_IGNORE = 65535  # the ignore value of the uint16 layouts of the detectron2-based projects


class WideLabelEvaluationDataset(ZeroShotDataset):
    """A :class:`ZeroShotDataset` for evaluation only (training targets are 8-bit), with uint16
    label maps read by :class:`LoadWideAnnotations`, 65535 ignored (255 is a class id)."""
    SEG_MAP_SUFFIX = '.tif'

    def __init__(self, pipeline: List[dict], img_dir: str, **kwargs):
        if not kwargs.get('test_mode', False):
            raise ValueError(
                f'{type(self).__name__} is an evaluation-only dataset ({len(self.CLASSES)} classes '
                f'in 16-bit label maps; training targets are 8-bit with 255 ignored): use it as '
                f'data.test / data.val with test_mode=True (tools/test.py sets it), and train on '
                f'another dataset, e.g. COCO-Stuff')
        kwargs.setdefault('ignore_index', WIDE_IGNORE)
        check_labels = kwargs.pop('check_labels', True)
        pipeline = list(pipeline)
        for i, t in enumerate(pipeline):
            if t.get('type') in ('LoadAnnotations', 'LoadWideAnnotations'):
                pipeline[i] = dict(t, type='LoadWideAnnotations')
                pipeline[i].pop('reduce_zero_label', None)
                if check_labels:
                    pipeline.insert(i + 1, dict(type='CheckSegMap', num_classes=len(self.CLASSES),
                                                ignore_index=kwargs['ignore_index']))
                break
        super().__init__(pipeline, img_dir, check_labels=False, **kwargs)
        # the evaluation ground truth too (CustomDataset builds a plain LoadAnnotations)
        self.gt_seg_map_loader = LoadWideAnnotations()
