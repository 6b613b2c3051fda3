"""The class-chunked test path against the all-classes-at-once reference, bit for bit."""
import numpy as np
import pytest
import torch
from mmcv.utils import ConfigDict

from cascade_clip.testing import reference_inference as R
from tests.tiny import build, tiny_model_cfg


def meta(h, w, flip=False, ori=None, img=None, direction='horizontal'):
    return dict(ori_shape=tuple(ori or (h, w)) + (3, ), img_shape=tuple(img or (h, w)) + (3, ),
                pad_shape=(h, w, 3), flip=flip, flip_direction=direction, scale_factor=1.0)


@pytest.fixture(scope='module', params=[False, True], ids=['inductive', 'transductive'])
def model(request):
    torch.manual_seed(0)
    m = build(tiny_model_cfg(self_training=request.param)).eval()
    # the inductive model calibrates its seen classes; the transductive one does not
    assert bool(m.decode_head.calibration) and m.decode_head.self_training == request.param
    return m


# 6 classes: chunks of 1, 2, 4 (not dividing 6) and all
@pytest.mark.parametrize('chunk', [1, 2, 4, 6])
@pytest.mark.parametrize('mode', ['slide', 'whole'])
def test_labels_and_scores_bit_identical_to_the_reference(model, mode, chunk):
    model.test_cfg = ConfigDict(mode=mode, crop_size=(64, 64), stride=(40, 40), crop_batch=2,
                                class_chunk=chunk)
    torch.manual_seed(1)
    # 75 x 131: neither a multiple of the patch (16) nor of the stride; the resized image
    # (70 x 125) in a padded batch, its original size 50 x 90
    img = torch.randn(1, 3, 75, 131)
    for flip, direction in ((False, 'horizontal'), (True, 'horizontal'), (True, 'vertical')):
        mt = [meta(75, 131, flip, ori=(50, 90), img=(70, 125), direction=direction)]
        with torch.no_grad():
            ref = R.predict_scores(model, img, mt)
            ref_labels = R.simple_test(model, img, mt)
            labels, top = model.predict_labels(img, mt)
            scores = model.predict_scores(img, mt)
            out = model(img=[img], img_metas=[mt], return_loss=False)  # MMSeg's test entry
        assert labels.shape == (1, 50, 90) and labels.dtype == torch.int64
        assert torch.equal(labels, ref_labels)
        assert np.array_equal(out[0], ref_labels[0].numpy())
        assert torch.equal(scores, ref)
        assert torch.equal(top, ref.gather(1, ref_labels[:, None])[:, 0])
        # (ties exist: random tiny weights; the lowest class index wins in both)


@pytest.mark.parametrize('chunk', [1, 4, 6])
@pytest.mark.parametrize('mode', ['slide', 'whole'])
def test_aug_test_labels_identical_to_the_reference(model, mode, chunk):
    model.test_cfg = ConfigDict(mode=mode, crop_size=(64, 64), stride=(40, 40), crop_batch=4,
                                class_chunk=chunk)
    torch.manual_seed(2)
    base = torch.randn(1, 3, 48, 72)
    imgs = [torch.nn.functional.interpolate(base, size=s, mode='bilinear', align_corners=False)
            for s in ((48, 72), (72, 108), (72, 108))]
    imgs[2] = imgs[2].flip(-1)
    metas = [[meta(48, 72, ori=(48, 72))], [meta(72, 108, ori=(48, 72))],
             [meta(72, 108, flip=True, ori=(48, 72))]]
    with torch.no_grad():
        ref = R.aug_test(model, imgs, metas)
        got = model(img=imgs, img_metas=metas, return_loss=False)  # -> aug_test
    assert len(got) == 1 and got[0].shape == (48, 72)
    assert np.array_equal(got[0], ref[0].numpy())


def test_slide_and_whole_inference_keep_mmseg_signatures(model):
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(48, 48), crop_batch=1,
                                class_chunk=4)
    img = torch.randn(2, 3, 64, 112)  # a batch of two
    mt = [meta(64, 112)] * 2
    with torch.no_grad():
        assert torch.equal(model.slide_inference(img, mt, True), R.slide_inference(model, img, mt, True))
        assert torch.equal(model.whole_inference(img, mt, False), R.whole_inference(model, img, mt, False))
        labels, _ = model.predict_labels(img, mt)
        assert torch.equal(labels, R.simple_test(model, img, mt))


def test_class_chunk_must_be_a_positive_integer(model):
    img = torch.randn(1, 3, 64, 64)
    for bad in (0, -3, 2.5, True):
        model.test_cfg = ConfigDict(mode='whole', class_chunk=bad)
        with pytest.raises(ValueError, match=rf'test_cfg.class_chunk must be a positive integer .*got {bad!r}'):
            model.predict_labels(img, [meta(64, 64)])
