"""tools/demo.py: one image, a folder (with sub-folders) or a glob; outputs named after the
inputs; unreadable files reported without stopping the others; label maps only as PNG; no
output over an input. Called in-process (``main(argv)``) on a tiny model."""
import importlib
import logging
import os

import mmcv
import numpy as np
import pytest

from cascade_clip.apis import init_model, segment_image
from cascade_clip.models.segmentors.cascade_clip import CascadeCLIP
from tests.tiny import write_tiny_files

demo = importlib.import_module('tools.demo')
NAMES = ['cat', 'sofa', 'window']


def write_photo(path, seed, h=64, w=64):
    from tools.demo_data import synthetic
    img, _ = synthetic.make_sample(np.random.RandomState(seed), 64)
    mmcv.imwrite(mmcv.imresize(img[..., ::-1], (w, h), interpolation='nearest'), str(path))
    return str(path)


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    return write_tiny_files(str(tmp_path_factory.mktemp('demo_model')))


@pytest.fixture
def photos(tmp_path):
    """photos/{a.jpg, sub/b.png, sub/deep/c.jpg, broken.jpg (not an image), notes.txt}."""
    d = tmp_path / 'photos'
    (d / 'sub/deep').mkdir(parents=True)
    write_photo(d / 'a.jpg', 0, 48, 80)
    write_photo(d / 'sub/b.png', 1)
    write_photo(d / 'sub/deep/c.jpg', 2)
    (d / 'broken.jpg').write_bytes(b'this is text, not a JPEG')
    (d / 'notes.txt').write_text('not an image name: left alone')
    return d


def run(model_files, *args):
    cfg, ckpt = model_files
    demo.main([*map(str, args), '--config', cfg, '--checkpoint', ckpt, '--device', 'cpu'])


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the tool gets as far as loading the model."""
    def refuse(*args, **kwargs):
        raise AssertionError('the model was loaded: the request should have been refused before')
    monkeypatch.setattr(demo, 'init_model', refuse)


def test_a_folder_gives_one_overlay_and_label_map_per_image(model_files, photos, tmp_path, caplog,
                                                             capsys, monkeypatch):
    calls = []
    encode = CascadeCLIP.encode_names
    monkeypatch.setattr(CascadeCLIP, 'encode_names',
                        lambda self, names, progress=None: calls.append(list(names)) or encode(self, names, progress))
    out, masks = tmp_path / 'out', tmp_path / 'masks'
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as e:
        run(model_files, photos, '--classes', ','.join(NAMES), '--out-dir', out, '--out-mask-dir', masks)
    # the unreadable file is named, the others are done, the exit status says how many failed
    assert e.value.code == f'error: 1 of 4 images could not be read: {photos}/broken.jpg'
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == [f'skipped {photos}/broken.jpg: cannot read image {photos}/broken.jpg: not an '
                       f'image file OpenCV can decode']
    want = ['a.png', 'sub/b.png', 'sub/deep/c.png']
    for d in (out, masks):
        assert sorted(str(p.relative_to(d)) for p in d.rglob('*') if p.is_file()) == want
    assert calls == [NAMES]  # the text embeddings, once for all images
    assert '4/4' in capsys.readouterr().err  # the progress bar, on stderr
    reference = init_model(*model_files, class_names=NAMES)
    for name, src in zip(want, ('a.jpg', 'sub/b.png', 'sub/deep/c.jpg')):
        labels = mmcv.imread(str(masks / name), flag='unchanged')
        expected, _ = segment_image(reference, str(photos / src))
        assert labels.dtype == np.uint8 and np.array_equal(labels, expected)
        overlay = mmcv.imread(str(out / name))
        assert overlay.shape[0] >= 4 * expected.shape[0]  # enlarged x4 (64 px < 256) with legend
    assert not list(tmp_path.rglob('.*tmp-*'))  # no temporary file left


def test_a_glob_names_outputs_below_its_leading_folders(model_files, photos, tmp_path, capsys, caplog):
    out = tmp_path / 'out'
    run(model_files, f'{photos}/sub/**/*.*', '--out-dir', out)  # below photos/sub, at any depth
    assert sorted(str(p.relative_to(out)) for p in out.rglob('*')) == ['b.png', 'deep', 'deep/c.png']
    assert '2/2' in capsys.readouterr().err
    assert f'segmented 2 of 2 images (6 classes): overlays in {out}' in caplog.text
    labels = segment_image(init_model(*model_files), str(photos / 'a.jpg'))[0]  # the config's classes
    assert labels.max() < 6


def test_one_file_keeps_its_interface(model_files, photos, tmp_path, caplog):
    overlay, mask = tmp_path / 'o.jpg', tmp_path / 'm.png'
    run(model_files, photos / 'sub/b.png', '--classes', 'sky, "table, wooden"', '--out', overlay,
        '--out-mask', mask)
    labels = mmcv.imread(str(mask), flag='unchanged')
    want, _ = segment_image(init_model(*model_files, class_names=['sky', 'table, wooden']),
                            str(photos / 'sub/b.png'))
    assert np.array_equal(labels, want) and mmcv.imread(str(overlay)).shape[0] == 256
    assert f'{photos}/sub/b.png: classes present: ' in caplog.text
    assert f'segmented 1 of 1 images (2 classes): overlay {overlay} and label map {mask}' in caplog.text


def test_a_jpeg_label_map_is_refused_before_any_work(model_files, photos, tmp_path, no_model):
    with pytest.raises(SystemExit, match=r'error: --out-mask .*labels.jpg: label maps are written only '
                       r'as PNG \(lossless; a .jpg would not keep the class ids\)'):
        run(model_files, photos / 'a.jpg', '--out', tmp_path / 'o.png', '--out-mask', tmp_path / 'labels.jpg')
    assert os.listdir(tmp_path) == ['photos']


def test_no_output_over_an_input(model_files, photos, tmp_path, no_model):
    a = photos / 'a.jpg'
    before = {p: p.read_bytes() for p in photos.rglob('*') if p.is_file()}
    with pytest.raises(SystemExit, match=f'error: the overlay of {a} would be written to {a}, over the '
                       f'input image {a}: refused, nothing was written'):
        run(model_files, a, '--out', a)
    b = photos / 'sub/b.png'
    with pytest.raises(SystemExit, match=f'the label map of {b} would be written to {photos}/sub/deep/../b.png'):
        run(model_files, b, '--out', tmp_path / 'o.png', '--out-mask', f'{photos}/sub/deep/../b.png')
    # an output folder that is the input folder: sub/b.png is an input, and c.jpg's overlay
    # would be sub/deep/c.png; a link to the folder is the same folder
    write_photo(photos / 'sub/b.jpg', 3)
    os.symlink(photos, tmp_path / 'link')
    for out_dir in (photos, tmp_path / 'link'):
        with pytest.raises(SystemExit, match=f'the overlay of {photos}/sub/b.jpg would be written to '
                           f'{out_dir}/sub/b.png, over the input image {photos}/sub/b.png'):
            run(model_files, photos, '--out-dir', out_dir)
    # overlays and label maps in one folder would have the same names
    with pytest.raises(SystemExit, match=f'the label map of {photos}/a.jpg would be written to '
                       f'{tmp_path}/both/a.png, over the overlay of {photos}/a.jpg'):
        run(model_files, photos, '--out-dir', tmp_path / 'both', '--out-mask-dir', tmp_path / 'both')
    assert {p: p.read_bytes() for p in photos.rglob('*') if p.is_file() and p.name != 'b.jpg'} == before
    assert not (tmp_path / 'both').exists()


def test_requests_that_do_not_fit_the_input(model_files, photos, tmp_path, no_model):
    with pytest.raises(SystemExit, match=f'error: {photos} is a folder or a glob \\(4 images\\): give '
                       f'--out-dir DIR'):
        run(model_files, photos, '--out', tmp_path / 'o.png')
    with pytest.raises(SystemExit, match=r"got 2 inputs \(.*a.jpg, .*b.png\): give one image, folder or "
                       r"glob pattern; quote a glob \('photos/\*.jpg'\)"):
        run(model_files, photos / 'a.jpg', photos / 'sub/b.png', '--out-dir', tmp_path / 'o')
    with pytest.raises(SystemExit, match=r'error: --out / --out-mask \(one image\) and --out-dir / '
                       r'--out-mask-dir \(one file per image\) cannot be combined'):
        run(model_files, photos / 'a.jpg', '--out', tmp_path / 'o.png', '--out-dir', tmp_path / 'o')
    with pytest.raises(SystemExit, match=r'error: --classes: class name\(s\) number 2 of 3 are empty'):
        run(model_files, photos / 'a.jpg', '--classes', 'cat,,sofa')
    with pytest.raises(SystemExit, match=r'error: no images \(.*\) in the files matching .*\*.gif'):
        run(model_files, f'{photos}/*.gif', '--out-dir', tmp_path / 'o')
    assert os.listdir(tmp_path) == ['photos']
