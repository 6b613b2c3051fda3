"""test_cfg is checked by the model when it is built: keys, modes, sliding windows that cover
every pixel."""
import numpy as np
import pytest
import torch
from mmseg.models import build_segmentor

import cascade_clip  # noqa: F401
from cascade_clip.models.segmentors.test_cfg import check_test_cfg
from tests.tiny import tiny_model_cfg


def slide(**kw):
    return dict(mode='slide', crop_size=(64, 64), stride=(48, 48), **kw)


def test_stride_larger_than_crop_is_refused_by_the_model_naming_both():
    with pytest.raises(ValueError, match=r'test_cfg: stride \(70, 48\) is larger than crop_size '
                       r'\(64, 64\): the sliding windows would leave pixels that no crop covers'):
        build_segmentor(tiny_model_cfg(test_cfg=dict(mode='slide', crop_size=(64, 64),
                                                     stride=(70, 48))))
    with pytest.raises(ValueError, match=r'stride \(32, 65\) is larger than crop_size \(64, 64\)'):
        check_test_cfg(dict(mode='slide', crop_size=[64, 64], stride=[32, 65]))


def test_misspelt_and_invalid_keys_are_refused():
    with pytest.raises(ValueError, match=r"test_cfg: unknown key 'strides' \(did you mean 'stride'\?\)"):
        build_segmentor(tiny_model_cfg(test_cfg=dict(mode='slide', crop_size=(64, 64), strides=(48, 48))))
    with pytest.raises(ValueError, match=r"unknown key 'crop_bach' \(did you mean 'crop_batch'\?\)"):
        check_test_cfg(dict(mode='whole', crop_bach=2))
    with pytest.raises(ValueError, match=r"mode must be 'whole' or 'slide', got 'slid'"):
        check_test_cfg(dict(mode='slid'))
    with pytest.raises(ValueError, match=r"mode='slide' needs stride"):
        check_test_cfg(dict(mode='slide', crop_size=(64, 64)))
    for bad in ((64, 0), (64,), (64.0, 64), 64, (True, 64)):
        with pytest.raises(ValueError, match=r'crop_size must be a pair of positive ints'):
            check_test_cfg(dict(mode='slide', crop_size=bad, stride=(1, 1)))
    for key in ('crop_batch', 'class_chunk'):
        for bad in (0, -1, 1.5, '4'):
            with pytest.raises(ValueError, match=rf'{key} must be a positive int, got {bad!r}'):
                check_test_cfg(slide(**{key: bad}))


def test_valid_test_cfgs_pass_unchanged():
    for cfg in (dict(mode='whole'), slide(crop_batch=1, class_chunk=16),
                dict(mode='slide', crop_size=(512, 512), stride=(426, 426), crop_batch=4),
                dict(mode='slide', crop_size=(64, 48), stride=(64, 48)), {}):
        out = check_test_cfg(cfg)
        assert dict(out) == cfg
    m = build_segmentor(tiny_model_cfg(test_cfg=slide(class_chunk=3)))
    assert m.test_cfg.class_chunk == 3 and m.test_cfg.stride == (48, 48)


def windows(size: int, crop: int, stride: int):
    """The sliding windows along one side, as the segmentor places them (MMSeg's formula):
    ceil((size - crop) / stride) + 1 windows, the last one flush with the far edge."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    out = []
    for i in range(n):
        end = min(i * stride + crop, size)
        out.append((max(end - crop, 0), end))
    return out


@pytest.mark.parametrize('size,crop,stride', [(97, 64, 48), (65, 64, 64), (129, 64, 63), (31, 64, 48),
                                              (200, 37, 37), (101, 10, 3), (64, 64, 1)])
def test_windows_with_stride_at_most_crop_cover_every_pixel(size, crop, stride):
    count = np.zeros(size, np.int64)
    for a, b in windows(size, crop, stride):
        assert b - a == min(crop, size)
        count[a:b] += 1
    assert count.min() >= 1
    # and a stride one larger than the crop would leave a gap whenever two windows fit
    if size > 2 * crop + 1:
        gap = np.zeros(size, np.int64)
        for a, b in windows(size, crop, crop + 1):
            gap[a:b] += 1
        assert gap.min() == 0


def test_slide_inference_scores_every_pixel_of_odd_sizes():
    torch.manual_seed(0)
    model = build_segmentor(tiny_model_cfg(test_cfg=dict(mode='slide', crop_size=(64, 64),
                                                         stride=(64, 40), crop_batch=2)))
    model.init_weights()
    model.eval()
    for h, w in ((97, 65), (129, 70)):
        meta = [dict(ori_shape=(h, w, 3), img_shape=(h, w, 3), pad_shape=(h, w, 3), flip=False)]
        with torch.no_grad():
            scores = model.slide_inference(torch.randn(1, 3, h, w), meta, rescale=True)
        assert scores.shape == (1, 6, h, w) and torch.isfinite(scores).all()
