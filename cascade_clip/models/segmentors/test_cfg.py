"""``test_cfg`` of :class:`CascadeCLIP`: checked when the model is built, so that a misspelt key
or a sliding window that leaves pixels unscored fails before any image is processed."""
from typing import Optional

from mmcv.utils import ConfigDict

from ...utils.strict import unknown_argument_message

# Every key the inference reads, with what it means (by hand: test_cfg has no signature)
TEST_CFG_KEYS = {
    'mode': "'whole' (one pass over the resized image) or 'slide' (sliding crops)",
    'crop_size': '(h, w) of the sliding crops (slide)',
    'stride': '(h, w) step between sliding crops, at most crop_size (slide)',
    'crop_batch': 'crops run through the network at once (slide; default 4)',
    'class_chunk': 'classes per chunk when producing full-resolution label maps '
                   '(positive int; default 4)',
}
MODES = ('whole', 'slide')
DEFAULT_CLASS_CHUNK = 4  # class_chunk when test_cfg does not set it


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _pair(test_cfg: dict, key: str, where: str) -> tuple:
    value = test_cfg.get(key)
    if value is None:
        raise ValueError(f"{where}: mode='slide' needs {key} ({TEST_CFG_KEYS[key]})")
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_positive_int, value))):
        raise ValueError(f'{where}: {key} must be a pair of positive ints (h, w), got {value!r}')
    return tuple(value)


def check_test_cfg(test_cfg: Optional[dict], where: str = 'test_cfg') -> ConfigDict:
    """``test_cfg`` as a ConfigDict, or ValueError naming the key and value (an empty one is
    allowed: a model built only to train)."""
    test_cfg = dict(test_cfg or {})
    unknown = [k for k in test_cfg if k not in TEST_CFG_KEYS]
    if unknown:
        raise ValueError(f'{where}: ' + unknown_argument_message(unknown, TEST_CFG_KEYS, 'key'))
    mode = test_cfg.get('mode')
    if mode is not None and mode not in MODES:
        raise ValueError(f"{where}: mode must be 'whole' or 'slide', got {mode!r}")
    if mode == 'slide':
        crop = _pair(test_cfg, 'crop_size', where)
        stride = _pair(test_cfg, 'stride', where)
        if stride[0] > crop[0] or stride[1] > crop[1]:
            raise ValueError(f'{where}: stride {stride} is larger than crop_size {crop}: the '
                             f'sliding windows would leave pixels that no crop covers (no score); '
                             f'use a stride of at most the crop size in each direction')
    for key in ('crop_batch', 'class_chunk'):
        if key in test_cfg and not _positive_int(test_cfg[key]):
            raise ValueError(f'{where}: {key} must be a positive int, got {test_cfg[key]!r}')
    return ConfigDict(test_cfg)
