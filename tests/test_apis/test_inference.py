import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch

from cascade_clip.apis import init_model, segment_image
from cascade_clip.utils import legend_names
from cascade_clip.models.decode_heads import HeadInputs
from tests.tiny import build, tiny_model_cfg, write_tiny_files

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
    """A tiny config file of the real structure and a checkpoint trained on 6 classes."""
    d = tmp_path_factory.mktemp('api')
    cfg_path, ckpt = write_tiny_files(
        str(d), test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)), img_scale=(96, 64))
    img = (np.random.RandomState(0).rand(50, 90, 3) * 255).astype(np.uint8)
    img_path = str(d / 'photo.jpg')
    mmcv.imwrite(img, img_path)
    return cfg_path, ckpt, img_path, d


def test_api_custom_vocabulary_non_square(tiny_files):
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt, device='cpu', class_names=['cat', 'sofa', 'window'])
    labels, scores = segment_image(model, img_path, return_scores=True)
    assert labels.shape == (50, 90) and scores.shape == (3, 50, 90)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert model.CLASSES == ('cat', 'sofa', 'window')
    # embeddings: computed once from the names with the checkpoint's text encoder
    from cascade_clip import tokenize
    with torch.no_grad():
        f = model.text_encoder(tokenize([f'a photo of a {n}' for n in ('cat', 'sofa', 'window')]))
    emb = f / f.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(model.vocabulary.embeddings, emb)
    # an array input gives the same result
    labels2, _ = segment_image(model, mmcv.imread(img_path))
    assert np.array_equal(labels, labels2)


def test_api_scores_equal_an_independent_computation(tiny_files):
    cfg, ckpt, _, _ = tiny_files
    model = init_model(cfg, ckpt, device='cpu', class_names=['cat', 'sofa', 'window'])
    emb = model.vocabulary.embeddings
    raw = (np.random.RandomState(1).rand(48, 72, 3) * 255).astype(np.uint8)
    labels, scores = segment_image(model, raw, return_scores=True)
    # by hand: the test pipeline resizes 48x72 into (96, 64) keeping the ratio -> 64x96 and
    # normalises; slide crops of 64 with stride 48 sit at x = 0 and 32; each crop scores
    # sigmoid(logits) - 0.1 (every class is seen); overlaps are averaged; back to 48x72
    resized = mmcv.imresize(raw, (96, 64), interpolation='bilinear', backend='cv2')
    x = mmcv.imnormalize(resized, np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375]), True)
    x = torch.from_numpy(x).permute(2, 0, 1)[None].float()
    total, count = torch.zeros(1, 3, 64, 96), torch.zeros(1, 1, 64, 96)
    with torch.no_grad():
        for x0 in (0, 32):
            logits = model.decode_head(HeadInputs(model.backbone(x[..., x0:x0 + 64]), emb, (0, 1, 2)))
            total[..., x0:x0 + 64] += logits.sigmoid() - 0.1
            count[..., x0:x0 + 64] += 1
    ref = torch.nn.functional.interpolate(total / count, size=(48, 72), mode='bilinear', align_corners=False)[0]
    np.testing.assert_allclose(scores, ref.numpy(), atol=1e-5)
    top2 = ref.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-4).numpy()  # pixels without a near-tie
    assert clear.mean() > 0.25  # random tiny weights: many classes score almost alike
    assert np.array_equal(labels[clear], ref.argmax(0).numpy()[clear])


def test_api_default_vocabulary_and_set_vocabulary(tiny_files):
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt)
    assert len(model.CLASSES) == 6
    labels, scores = segment_image(model, img_path, return_scores=True)
    assert scores.shape == (6, 50, 90)
    model.set_vocabulary(['sky', 'road'], seen=[0])
    labels2, scores2 = segment_image(model, img_path, return_scores=True)
    assert scores2.shape == (2, 50, 90) and set(np.unique(labels2)) <= {0, 1}
    assert model.vocabulary.seen == (0, ) and model.vocabulary.unseen == (1, )
    assert model.CLASSES == ('sky', 'road') and model.num_classes == 2


def test_api_errors(tiny_files, tmp_path):
    cfg, ckpt, img_path, _ = tiny_files
    with pytest.raises(ValueError, match='empty'):
        init_model(cfg, ckpt, class_names=[])
    with pytest.raises(ValueError, match=r"'cat' \(position 0\) and 'cat' \(position 2\) are the same"):
        init_model(cfg, ckpt, class_names=['cat', 'dog', 'cat'])
    model = init_model(cfg, ckpt)
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='cannot read image .*broken.jpg'):
        segment_image(model, str(bad))
    with pytest.raises(FileNotFoundError, match='image not found'):
        segment_image(model, str(tmp_path / 'nope.jpg'))
    # a checkpoint trained on another number of classes needs the vocabulary
    m = build(tiny_model_cfg())
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=m.state_dict(), meta=dict(CLASSES=['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'])),
               other)
    with pytest.raises(ValueError, match=r"other.pth was trained on 8 classes \['a', 'b', 'c', 'd', "
                       r"\.\.\.\], but the model \(model from .*tiny_cfg.py\) segments 6 classes"):
        init_model(cfg, other)


def test_demo_tool_writes_overlay_and_mask(tiny_files, tmp_path):
    cfg, ckpt, img_path, _ = tiny_files
    out, mask = str(tmp_path / 'overlay.png'), str(tmp_path / 'mask.png')
    r = subprocess.run([sys.executable, 'tools/demo.py', img_path, '--config', cfg, '--checkpoint', ckpt,
                        '--classes', 'cat,sofa,window', '--device', 'cpu', '--out', out,
                        '--out-mask', mask, '--opacity', '0.6'],
                       cwd=ROOT, capture_output=True, text=True, env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0, r.stderr[-3000:]
    m = mmcv.imread(mask, flag='unchanged')
    assert m.shape == (50, 90) and set(np.unique(m)) <= {0, 1, 2}
    ov = mmcv.imread(out)
    assert ov.shape[0] >= 50 and ov.shape[1] > 90
    present = legend_names(m, ['cat', 'sofa', 'window'])
    assert f'classes present: {", ".join(present)}' in r.stderr + r.stdout
    r = subprocess.run([sys.executable, 'tools/demo.py', img_path, '--config', cfg, '--checkpoint', ckpt,
                        '--classes', 'cat,cat'], cwd=ROOT, capture_output=True, text=True,
                       env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin'})
    assert r.returncode != 0 and 'are the same class up to case and white space' in r.stderr


def test_overlay_legend_lists_exactly_the_present_classes():
    from cascade_clip.utils import draw_segmentation
    img = np.zeros((20, 30, 3), np.uint8)
    seg = np.zeros((20, 30), np.int64)
    seg[:, 20:] = 2
    seg[0, 0] = 255
    names = ['cat', 'sofa', 'window']
    assert legend_names(seg, names) == ['cat', 'window']
    out = draw_segmentation(img, seg, names, [[255, 0, 0], [0, 255, 0], [0, 0, 255]], opacity=1.0,
                            min_size=0)
    assert out.shape[0] >= 20 and out.shape[1] > 30
    assert tuple(out[5, 5]) == (0, 0, 255)  # BGR of red
    assert tuple(out[5, 25]) == (255, 0, 0)  # BGR of blue
    assert tuple(out[0, 0]) == (0, 0, 0)  # ignore value: uncoloured
    with pytest.raises(ValueError, match='opacity'):
        draw_segmentation(img, seg, names, opacity=0)


def test_small_overlays_are_enlarged_nearest_neighbour():
    from cascade_clip.utils import draw_segmentation
    img = np.zeros((20, 30, 3), np.uint8)
    seg = np.zeros((20, 30), np.int64)
    seg[:, 20:] = 2
    seg[0, 0] = 255
    pal = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    plain = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=0)
    big = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=100)
    # longer side 30 < 100: factor ceil(100 / 30) = 4, each pixel a 4 x 4 block
    assert big.shape[0] == 80 and big.shape[1] - 120 == plain.shape[1] - 30  # same legend panel
    assert (big[:4, :4] == 0).all()  # the ignored pixel (0, 0), uncoloured
    assert tuple(big[4, 0]) == (0, 0, 255) and tuple(big[0, 4]) == (0, 0, 255)
    assert (big[:, 80:120] == (255, 0, 0)).all()  # columns 20-29 of class 2, blue in BGR
    assert (big[:, 79] == (0, 0, 255)).all()
    # an image already as large as min_size is left at its size
    same = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=30)
    assert np.array_equal(same, plain)


def test_switch_vocabulary_and_back_is_bit_identical(tiny_files):
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt)
    names0, seen0 = model.vocabulary.names, model.vocabulary.seen
    emb0 = model.class_embeddings().clone()
    labels0, scores0 = segment_image(model, img_path, return_scores=True)
    model.set_vocabulary(['sky', 'road', 'window'], seen=[1])
    assert model.num_classes == 3 and model.label_map[:3].tolist() == [255, 0, 255]
    assert model.vocabulary.unseen == (0, 2)
    segment_image(model, img_path)
    # back: the same names, split and embeddings give the same outputs, bit for bit
    model.set_vocabulary(names0, seen0, emb0)
    labels1, scores1 = segment_image(model, img_path, return_scores=True)
    assert np.array_equal(labels0, labels1) and np.array_equal(scores0, scores1)
    assert model.label_map.tolist() == init_model(cfg, ckpt).label_map.tolist()


def test_mmseg_inference_segmentor_on_a_switched_model(tiny_files):
    from mmseg.apis import inference_segmentor
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt)
    model.set_vocabulary(['sky', 'road'])
    result = inference_segmentor(model, img_path)
    labels, _ = segment_image(model, img_path)
    assert len(result) == 1 and result[0].shape == (50, 90)
    assert np.array_equal(result[0], labels)  # MMSeg's path and ours agree


def test_segment_image_return_forms_and_the_reference_scores(tiny_files):
    """(labels, top) by default, (labels, scores) with return_scores=True; both equal the
    all-classes-at-once computation (tests/reference_inference.py)."""
    from tests import reference_inference as R
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt, device='cpu', class_names=['cat', 'sofa', 'window', 'sky', 'road'],
                       seen=[0, 3])
    model.test_cfg['class_chunk'] = 2  # 5 classes: chunks of 2, 2 and 1
    labels, top = segment_image(model, img_path)
    assert labels.dtype == np.int64 and labels.shape == (50, 90)
    assert top.dtype == np.float32 and top.shape == (50, 90)
    labels_s, scores = segment_image(model, img_path, return_scores=True)
    assert scores.dtype == np.float32 and scores.shape == (5, 50, 90)
    # the reference, on the pipeline's output for the same image
    from mmcv.parallel import collate
    from mmseg.datasets.pipelines import Compose
    from cascade_clip.apis.inference import _LoadArray
    pipeline = Compose([_LoadArray()] + [dict(p) for p in model.cfg.data.test.pipeline[1:]])
    data = collate([pipeline(dict(img=mmcv.imread(img_path)))], samples_per_gpu=1)
    from mmcv.parallel import scatter
    data = scatter(data, [-1])[0]
    img, metas = data['img'][0], data['img_metas'][0]
    with torch.no_grad():
        ref = R.predict_scores(model, img, metas)[0]
    np.testing.assert_allclose(scores, ref.numpy(), rtol=0, atol=1e-6)
    top2 = ref.topk(2, dim=0).values
    clear = ((top2[0] - top2[1]) > 1e-5).numpy()
    assert clear.mean() > 0.5
    assert np.array_equal(labels[clear], ref.argmax(0).numpy()[clear])
    assert np.array_equal(labels_s, scores.argmax(0))
    np.testing.assert_allclose(top, np.take_along_axis(ref.numpy(), labels[None], 0)[0], rtol=0, atol=1e-6)
