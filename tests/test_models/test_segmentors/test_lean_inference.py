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


@pytest.mark.parametrize('chunk', [1, 2, 3, 7])
def test_running_argmax_is_argmax_over_all_classes(chunk):
    """Ties keep the lowest class, within a chunk and across chunks; a NaN beats every number
    and the first NaN wins, as ``torch.argmax`` over all classes at once."""
    from cascade_clip.models.segmentors.lean_inference import running_argmax
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (2, 7, 5, 6), generator=g).float()  # many ties
    x[0, 4, 0, 0] = float('nan')
    x[0, 2, 0, 1] = float('nan')
    x[0, 5, 0, 1] = float('nan')
    x[1, 6, 2, 3] = float('inf')
    x[1, :, 4, 5] = float('-inf')
    labels, values = running_argmax(lambda k0, k1: x[:, k0:k1], 7, chunk)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, x.argmax(dim=1))
    assert labels[0, 0, 0] == 4 and labels[0, 0, 1] == 2 and labels[1, 2, 3] == 6
    assert labels[1, 4, 5] == 0  # all -inf: a tie, the first class
    expect = x.gather(1, labels[:, None])[:, 0]
    assert torch.equal(values.isnan(), expect.isnan())
    assert torch.equal(values.nan_to_num(), expect.nan_to_num())
    # without NaN, the arithmetic route (float index, maximum): the same labels and values,
    # ties, +inf and all--inf rows included
    y = x.nan_to_num(nan=-1.0, posinf=float('inf'), neginf=float('-inf'))
    labels, values = running_argmax(lambda k0, k1: y[:, k0:k1], 7, chunk, nan_aware=False)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, y.argmax(dim=1))
    assert torch.equal(values, y.amax(dim=1))
    assert labels[1, 2, 3] == 6 and labels[1, 4, 5] == 0


def test_non_finite_logits_give_the_reference_labels(model):
    """An inf logit can make NaN scores (0 * inf in the bilinear weights): the chunked path
    then takes NaN into account and still matches ``argmax`` of the reference scores."""
    model.test_cfg = ConfigDict(mode='whole', class_chunk=2)
    img = torch.randn(1, 3, 64, 80)
    mt = [meta(64, 80)]
    head = model.decode_head
    orig = head.forward

    def forward(inputs, upsample=True):  # non-finite decoder logits, then the head's resize
        out = orig(inputs, upsample=False)
        assert out.shape[-2:] != (head.image_size, head.image_size)
        out[:, 3, 1, 1] = float('inf')
        out[:, 1, 2, 2] = float('-inf')
        out[:, 4, 3, 3] = float('nan')
        if upsample:
            out = torch.nn.functional.interpolate(out, size=(head.image_size, ) * 2,
                                                  mode='bilinear', align_corners=False)
        return out

    head.forward = forward
    try:
        with torch.no_grad():
            src = model.score_source(img, mt, True)
            assert not src.finite
            labels, _ = model.predict_labels(img, mt)
            ref = R.predict_scores(model, img, mt)
    finally:
        del head.forward
    assert ref.isnan().any()  # the case is real
    assert torch.equal(labels, ref.argmax(dim=1))


def test_scores_of_successive_chunks_are_each_the_reference(model):
    """The canvas and the windows' scores live in buffers reused from chunk to chunk: every
    chunk still has its own classes' values (and ``all_scores`` copies them out)."""
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(40, 40), crop_batch=2,
                                class_chunk=2)
    img = torch.randn(1, 3, 75, 131)
    mt = [meta(75, 131, ori=(50, 90), img=(70, 125))]
    with torch.no_grad():
        ref = R.predict_scores(model, img, mt)
        src = model.score_source(img, mt, True)
        for k0, k1 in ((0, 2), (2, 4), (4, 6), (1, 3), (0, 6)):
            assert torch.equal(src.scores(k0, k1), ref[:, k0:k1])


@pytest.mark.parametrize('config', ['coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py',
                                    'coco_171/vpt_seg_zero_vit-b_512x512_40k_12_100_multi_st.py'],
                         ids=['inductive', 'transductive'])
def test_published_structure_with_random_weights_bit_identical(config):
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
            assert torch.equal(labels, R.simple_test(model, img, [mt]))
            assert torch.equal(top, ref.gather(1, labels[:, None])[:, 0])
        model.test_cfg = ConfigDict(cases[0][0])
        imgs = [img, img.flip(-1)]
        metas = [[meta(144, 208)], [meta(144, 208, flip=True)]]
        got = model(img=imgs, img_metas=metas, return_loss=False)
        assert np.array_equal(got[0], R.aug_test(model, imgs, metas)[0].numpy())
