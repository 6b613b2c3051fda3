"""tools/web_demo.py without a browser: the name parsing, the messages for bad input, the result
against segment_image on the same model, the embedding cache, the label-map file."""
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint

from cascade_clip.apis import init_model, segment_image
from tests.tiny import write_tiny_files

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import web_demo  # noqa: E402
from web_demo import InputError, UnreadableUpload, WebDemo  # noqa: E402


def write_photo(path, h=48, w=80, seed=0):
    from tools.demo_data import synthetic
    img, _ = synthetic.make_sample(np.random.RandomState(seed), 64)
    mmcv.imwrite(mmcv.imresize(img[..., ::-1], (w, h), interpolation='nearest'), path)
    return path


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('web'))
    cfg, ckpt = write_tiny_files(d)
    return cfg, ckpt, write_photo(osp.join(d, 'photo.png')), d


@pytest.fixture
def demo(files, tmp_path):
    cfg, ckpt, _, _ = files
    return WebDemo(init_model(cfg, ckpt), str(tmp_path), max_pixels=10_000)


def test_class_names_read_with_the_project_rule(demo):
    """The page reads names with the project's one parser (parse_class_list) and shows its
    ValueError as the page's message."""
    assert demo.read_names('cat, sofa,window') == ['cat', 'sofa', 'window']
    assert demo.read_names('cat\n\nsofa\n  window  \n') == ['cat', 'sofa', 'window']
    assert demo.read_names('"table, wooden", cat\nsky') == ['table, wooden', 'cat', 'sky']
    for text in ('', '  \n \n', None):
        with pytest.raises(InputError, match='the class list is empty: type at least one class name'):
            demo.read_names(text)
    with pytest.raises(InputError, match=r'class name\(s\) number 2, 4 of 4 are empty'):
        demo.read_names('cat,,dog,')
    with pytest.raises(InputError, match='close every opening double quote'):
        demo.read_names('cat, "sofa')


def test_result_equals_segment_image_and_the_files(files, demo):
    cfg, ckpt, photo, _ = files
    r = demo.segment(photo, 'cat, sofa\nwindow', 0.6)
    # independent: the API on a fresh model with these names
    want, _ = segment_image(init_model(cfg, ckpt, class_names=['cat', 'sofa', 'window']), photo)
    assert np.array_equal(r.labels, want)
    saved = mmcv.imread(r.label_map_path, flag='unchanged')
    assert saved.dtype == np.uint8 and np.array_equal(saved, want)
    counts = [(want == k).sum() for k in range(3)]
    rows = sorted(([n, k, c, round(100 * c / want.size, 2)] for k, (n, c) in
                   enumerate(zip(['cat', 'sofa', 'window'], counts)) if c), key=lambda row: -row[2])
    assert r.table == rows and sum(row[2] for row in r.table) == 48 * 80
    assert mmcv.imread(r.overlay_path).shape[1] > 80 * 3  # enlarged (x4) + legend panel
    assert r.notes == []
    assert osp.dirname(osp.dirname(r.label_map_path)) == demo.out_dir


def test_embeddings_are_cached_per_name(files, demo, monkeypatch):
    cfg, ckpt, photo, _ = files
    calls = []
    encode = demo.model.encode_names
    monkeypatch.setattr(demo.model, 'encode_names', lambda names, progress=None: calls.append(list(names))
                        or encode(names, progress))
    demo.segment(photo, 'cat, sofa', 0.5)
    steps = []
    r = demo.segment(photo, 'window, Sofa ,cat', 0.5, progress=lambda f, desc: steps.append((f, desc)))
    assert calls == [['cat', 'sofa'], ['window', 'Sofa']]  # 'Sofa' is its own text: encoded once
    assert steps[0] == (1.0, 'text embeddings of 2 new class names') and steps[-1] == (1.0, 'segmenting')
    demo.segment(photo, 'cat, window', 0.5)
    assert len(calls) == 2
    # the rows ('cat', 'window') are those of the text encoder, whatever the list they came with
    fresh = init_model(cfg, ckpt, class_names=['window', 'Sofa', 'cat'])
    torch.testing.assert_close(demo.model.vocabulary.embeddings,
                               fresh.vocabulary.embeddings[[2, 0]], rtol=0, atol=1e-6)
    assert r.labels.shape == (48, 80)


def test_messages_for_bad_input(files, demo, tmp_path):
    _, _, photo, _ = files
    with pytest.raises(InputError, match='no image: upload or paste one first'):
        demo.segment(None, 'cat', 0.5)
    bad = tmp_path / 'notes.png'
    bad.write_bytes(b'this is text, not a picture')
    with pytest.raises(InputError, match=r'notes.png could not be read as an image \(OpenCV cannot decode'):
        demo.segment(str(bad), 'cat', 0.5)
    with pytest.raises(InputError, match=r'scan.jpg could not be read as an image \(UnidentifiedImageError'):
        demo.segment(UnreadableUpload('scan.jpg', 'UnidentifiedImageError: cannot identify'), 'cat', 0.5)
    with pytest.raises(InputError, match='the class list is empty'):
        demo.segment(photo, '\n', 0.5)
    with pytest.raises(InputError, match=r"'cat' \(position 0\) and 'CAT' \(position 2\) are the same class "
                       r'up to case and white space'):
        demo.segment(photo, 'cat, sofa, CAT', 0.5)
    # "a photo of a {}" with 80 x "cat": 4 + 80 BPE tokens + start and end = 86, over the 77 of the context
    long = ' '.join(['cat'] * 80)
    with pytest.raises(InputError, match=r"context holds 77 tokens with the prompt template: 'cat cat .*…' "
                       r'\(86 tokens\); shorten'):
        demo.segment(photo, f'sofa, {long}', 0.5)
    with pytest.raises(InputError, match=r'the opacity must be in \(0, 1\], got 0'):
        demo.segment(photo, 'cat', 0)
    small = WebDemo(demo.model, demo.out_dir, max_classes=2)
    with pytest.raises(InputError, match=r'3 class names, more than the 2 this page accepts \(--max-classes\)'):
        small.segment(photo, 'a, b, c', 0.5)


def test_large_images_resized_or_refused(files, demo):
    _, _, photo, _ = files
    # 80 x 48 = 3840 px; limit 1000: scale sqrt(1000 / 3840) = 0.5103 -> 40 x 24 (floor)
    resize = WebDemo(demo.model, demo.out_dir, max_pixels=1000)
    r = resize.segment(photo, 'cat, sofa', 0.5)
    assert r.labels.shape == (24, 40)
    assert r.notes == ['the image (80×48 = 3,840 pixels) is larger than the limit of 1,000 pixels '
                       '(--max-pixels): it was resized to 40×24 before segmentation, and the overlay '
                       'and label map have that size']
    refuse = WebDemo(demo.model, demo.out_dir, max_pixels=1000, oversize='refuse')
    with pytest.raises(InputError, match=r'the image \(80×48 = 3,840 pixels\) is larger than the limit of '
                       r'1,000 pixels \(--max-pixels\): refused'):
        refuse.segment(photo, 'cat', 0.5)


def test_run_request_shows_messages_not_tracebacks(files, demo, monkeypatch):
    _, _, photo, _ = files
    overlay, table, downloads, status = web_demo.run_request(demo, photo, '', 0.5)
    assert overlay is None and table == [] and downloads is None
    assert status.startswith('**Error:** the class list is empty')
    _, _, _, status = web_demo.run_request(demo, photo, 'a_b, <b>x</b>, a_b', 0.5)
    assert "'a\\_b' \\(position 0\\)" in status and '<b>' not in status  # user text made inert
    monkeypatch.setattr(web_demo, 'segment_image', lambda *a: 1 / 0)
    _, _, _, status = web_demo.run_request(demo, photo, 'cat', 0.5)
    assert status == '**Error:** segmentation failed: ZeroDivisionError: division by zero'


def test_many_classes_give_a_16_bit_label_map(files, demo):
    _, _, photo, _ = files
    names = [f'thing {i}' for i in range(300)]
    r = demo.segment(photo, ', '.join(names), 0.5)
    saved = mmcv.imread(r.label_map_path, flag='unchanged')
    assert saved.dtype == np.uint16 and np.array_equal(saved, r.labels)


def test_config_embedding_file_seeds_the_cache(tmp_path, files):
    _, _, photo, _ = files
    names = ['cat', 'dog', 'cow', 'tree', 'sky', 'road']
    rows = torch.nn.functional.normalize(torch.randn(6, 32, generator=torch.Generator().manual_seed(3)), dim=1)
    emb_file = str(tmp_path / 'emb.npy')
    np.save(emb_file, rows.numpy())
    cfg, ckpt = write_tiny_files(str(tmp_path), embedding_file=emb_file)
    model, notice, seeds, examples, _ = web_demo.load_model(cfg, ckpt, 'cpu')
    assert list(seeds) == names and examples[0] == ', '.join(names)
    assert 'from emb\\.npy' in notice  # markdown-escaped
    demo = WebDemo(model, str(tmp_path))
    demo.cache.add(list(seeds), torch.stack(list(seeds.values())))
    r = demo.segment(photo, 'sky, cat', 0.5)
    # the file's rows, not the text encoder's, for the config's classes
    torch.testing.assert_close(demo.model.vocabulary.embeddings, rows[[4, 0]], rtol=0, atol=0)
    ref = init_model(cfg, ckpt, class_names=['sky', 'cat'])
    ref.set_vocabulary(['sky', 'cat'], embeddings=rows[[4, 0]])
    assert np.array_equal(r.labels, segment_image(ref, photo)[0])


def test_default_model_missing_says_to_run_the_demo(tmp_path, monkeypatch):
    monkeypatch.setattr(web_demo, 'ROOT', str(tmp_path))
    with pytest.raises(SystemExit, match=r"no --checkpoint given and the offline demo's model is not there "
                       r'\(.*work_dirs/demo/seed_0/latest.pth\); make it with: bash tools/demo.sh'):
        web_demo.load_model(None, None, 'cpu')
    with pytest.raises(SystemExit, match='--checkpoint needs --config'):
        web_demo.load_model(None, 'x.pth', 'cpu')
    with pytest.raises(SystemExit, match='--config needs --checkpoint'):
        web_demo.load_model('x.py', None, 'cpu')


def test_default_model_is_the_offline_demos(tmp_path, monkeypatch):
    """Without --checkpoint: the demo config and checkpoint under the checkout, with the rows of
    the demo's embedding file for its 12 classes (its text encoder is untrained)."""
    import shutil
    from mmcv import Config
    from mmseg.models import build_segmentor
    shutil.copytree(osp.join(ROOT, 'configs'), tmp_path / 'configs')
    cfg = Config.fromfile(str(tmp_path / web_demo.DEMO_CONFIG))
    names = list(cfg.data.test.classes)
    rows = torch.nn.functional.normalize(torch.randn(12, 32, generator=torch.Generator().manual_seed(5)), dim=1)
    dirs = [tmp_path / 'data/demo', tmp_path / 'work_dirs/demo/seed_0']
    for d in dirs:
        d.mkdir(parents=True)
    np.save(tmp_path / web_demo.DEMO_EMBEDDINGS, rows.numpy())
    torch.manual_seed(0)
    model = build_segmentor(dict(cfg.model, pretrained=None, load_text_embedding=None, class_names=names))
    save_checkpoint(model, str(tmp_path / web_demo.DEMO_CHECKPOINT), meta=dict(CLASSES=names))
    monkeypatch.setattr(web_demo, 'ROOT', str(tmp_path))
    monkeypatch.chdir('/')  # the checkout's files, wherever the tool is started
    served, notice, seeds, examples, _ = web_demo.load_model(None, None, 'cpu')
    # the file's rows as the model reads them (re-normalised on load: equal up to rounding)
    assert list(seeds) == names
    torch.testing.assert_close(torch.stack(list(seeds.values())), rows, rtol=0, atol=1e-6)
    assert "offline demo's tiny model" in notice and 'only its 12 classes' in notice
    assert examples[1] == 'red dots, green stripes, blue flat, yellow stripes'  # the unseen ones
    assert served.vocabulary.seen == tuple(cfg.model.base_class)
