"""The class-chunked test path against the all-classes-at-once reference: the same labels on
every pixel whose two best classes differ by more than 1e-5, the same scores to 1e-6."""
import numpy as np
import pytest
import torch
from mmcv.utils import ConfigDict

from tests import reference_inference as R
from tests.tiny import build, tiny_model_cfg


def assert_same_labels(labels, ref_scores):
    """``labels`` (B, H, W) are the arg-max of ``ref_scores`` (B, K, H, W) wherever the two
    best scores differ by more than 1e-5 (there, and only there, the label is determined)."""
    top2 = ref_scores.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-5
    assert clear.float().mean() > 0.5  # the comparison covers most pixels
    assert torch.equal(labels[clear], ref_scores.argmax(1)[clear])


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
def test_labels_and_scores_equal_the_reference(model, mode, chunk):
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
            labels, top = model.predict_labels(img, mt)
            scores = model.predict_scores(img, mt)
            out = model(img=[img], img_metas=[mt], return_loss=False)  # MMSeg's test entry
        assert labels.shape == (1, 50, 90) and labels.dtype == torch.int64
        assert_same_labels(labels, ref)
        assert np.array_equal(out[0], labels[0].numpy())
        torch.testing.assert_close(scores, ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(top, ref.gather(1, labels[:, None])[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize('chunk', [1, 4, 6])
@pytest.mark.parametrize('mode', ['slide', 'whole'])
def test_aug_test_labels_equal_the_reference(model, mode, chunk):
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
        ref = R.aug_test_probabilities(model, imgs, metas)
        got = model(img=imgs, img_metas=metas, return_loss=False)  # -> aug_test
    assert len(got) == 1 and got[0].shape == (48, 72)
    assert_same_labels(torch.from_numpy(got[0])[None], ref)


def test_slide_and_whole_inference_keep_mmseg_signatures(model):
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(48, 48), crop_batch=1,
                                class_chunk=4)
    img = torch.randn(2, 3, 64, 112)  # a batch of two
    mt = [meta(64, 112)] * 2
    with torch.no_grad():
        torch.testing.assert_close(model.slide_inference(img, mt, True),
                                   R.slide_inference(model, img, mt, True), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.whole_inference(img, mt, False),
                                   R.whole_inference(model, img, mt, False), rtol=0, atol=1e-6)
        labels, _ = model.predict_labels(img, mt)
        assert_same_labels(labels, R.predict_scores(model, img, mt))


def test_class_chunk_must_be_a_positive_integer(model):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=rf'test_cfg: class_chunk must be a positive int, got {bad!r}'):
            build(tiny_model_cfg(test_cfg=dict(mode='whole', class_chunk=bad)))


@pytest.mark.parametrize('chunk', [1, 2, 3, 7])
def test_running_argmax_is_argmax_over_all_classes(chunk):
    """Ties keep the lowest class, within a chunk and across chunks, as ``torch.argmax`` over
    all classes at once; +inf and all -inf rows included."""
    from cascade_clip.models.segmentors.class_chunks import running_argmax
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (2, 7, 5, 6), generator=g).float()  # many ties
    x[1, 6, 2, 3] = float('inf')
    x[1, :, 4, 5] = float('-inf')
    labels, values = running_argmax(lambda k0, k1: x[:, k0:k1], 7, chunk)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, x.argmax(dim=1))
    assert torch.equal(values, x.amax(dim=1))
    assert labels[1, 2, 3] == 6 and labels[1, 4, 5] == 0  # all -inf: a tie, the first class


def test_successive_chunks_each_give_their_classes(model):
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(40, 40), crop_batch=2,
                                class_chunk=2)
    img = torch.randn(1, 3, 75, 131)
    mt = [meta(75, 131, ori=(50, 90), img=(70, 125))]
    with torch.no_grad():
        ref = R.predict_scores(model, img, mt)
        scores = model.class_scores(img, mt, True)
        for k0, k1 in ((0, 2), (2, 4), (4, 6), (1, 3), (0, 6)):
            torch.testing.assert_close(scores(k0, k1), ref[:, k0:k1], rtol=0, atol=1e-6)


@pytest.mark.parametrize('config', ['coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py',
                                    'coco_171/vpt_seg_zero_vit-b_512x512_40k_12_100_multi_st.py'],
                         ids=['inductive', 'transductive'])
def test_published_structure_with_random_weights(config):
    """The full published COCO-Stuff structure (ViT-B/16, 512-px head, three decoders), random
    weights and 20 random class embeddings: slide windows smaller than the head's 512 px (so
    the head's scores are resized to the window), whole mode with a rescale, flip, aug-test."""
    from mmcv import Config

    from cascade_clip.apis.measure import build_model_for_measurement
    cfg = Config.fromfile(f'configs/{config}')
    torch.manual_seed(0)
    model = build_model_for_measurement(cfg)
    assert model.decode_head.image_size == 512 and len(model.decode_head.cascade_decoders) == 3
    g = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(20, 512, generator=g), dim=-1)
    model.set_vocabulary([f'c{i}' for i in range(20)], seen=list(range(0, 20, 2)), embeddings=emb)
    img = torch.randn(1, 3, 144, 208, generator=g)
    cases = [
        (dict(mode='slide', crop_size=(128, 128), stride=(96, 96), crop_batch=4, class_chunk=3),
         meta(144, 208)),
        (dict(mode='whole', class_chunk=7), meta(144, 208, flip=True, ori=(100, 150), img=(140, 200))),
    ]
    with torch.no_grad():
        for test_cfg, mt in cases:
            model.test_cfg = ConfigDict(test_cfg)
            ref = R.predict_scores(model, img, [mt])
            labels, top = model.predict_labels(img, [mt])
            assert_same_labels(labels, ref)
            torch.testing.assert_close(top, ref.gather(1, labels[:, None])[:, 0], rtol=0, atol=1e-6)
        model.test_cfg = ConfigDict(cases[0][0])
        imgs = [img, img.flip(-1)]
        metas = [[meta(144, 208)], [meta(144, 208, flip=True)]]
        got = model(img=imgs, img_metas=metas, return_loss=False)
        assert_same_labels(torch.from_numpy(got[0])[None], R.aug_test_probabilities(model, imgs, metas))
