import os.path as osp

import numpy as np
import pytest
import torch

from cascade_clip import tokenize
from cascade_clip.clip import MULTI_TEMPLATES
from cascade_clip.models.backbones import CLIPTextEncoder
from cascade_clip.datasets import ZeroPascalVOCDataset20
from mmseg.datasets import ADE20KDataset, PascalContextDataset

from tests.tool_runner import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run(*args):
    return run_tool('build_text_embeddings', *args)


def direct(clip_path, names, templates):
    enc = CLIPTextEncoder.from_clip(clip_path, heads=4)
    with torch.no_grad():
        per = []
        for t in templates:
            f = enc(tokenize([t.format(n) for n in names]))
            per.append(f / f.norm(dim=-1, keepdim=True))
        e = torch.stack(per).mean(0)
    return (e / e.norm(dim=-1, keepdim=True)).numpy()


def test_single_template_class_list(tiny_clip, tmp_path):
    out = tmp_path / 'e.npy'
    r = run('--clip', tiny_clip[0], '--classes', 'cat, sofa,window', '--template', 'single',
            '--out', str(out), '--heads', '4')
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(arr, direct(tiny_clip[0], ['cat', 'sofa', 'window'], ['a photo of a {}']), atol=1e-5)


def test_multi_template_dataset_order(tiny_clip, tmp_path):
    out = tmp_path / 'voc.npy'
    r = run('--clip', tiny_clip[1], '--dataset', 'voc20', '--template', 'multi', '--out', str(out),
            '--heads', '4', '--batch-size', '64')
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    names = list(ZeroPascalVOCDataset20.CLASSES)
    assert arr.shape == (20, 32) and names[0] == 'aeroplane'
    np.testing.assert_allclose(arr, direct(tiny_clip[1], names, MULTI_TEMPLATES), atol=1e-5)


@pytest.mark.parametrize('dataset,first,n', [('ade150', 'wall', 150), ('context60', 'background', 60)])
def test_ade150_and_context60_class_lists(tiny_clip, tmp_path, dataset, first, n):
    out = tmp_path / f'{dataset}.npy'
    r = run('--clip', tiny_clip[0], '--dataset', dataset, '--out', str(out), '--heads', '4')
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    names = list((ADE20KDataset if dataset == 'ade150' else PascalContextDataset).CLASSES)
    assert arr.shape == (n, 32) and names[0] == first and len(names) == n
    np.testing.assert_allclose(arr, direct(tiny_clip[0], names, ['a photo of a {}']), atol=1e-5)


def test_classes_file_and_errors(tiny_clip, tmp_path):
    f = tmp_path / 'classes.txt'
    f.write_text('road\nsky\n\ntree\n')
    out = tmp_path / 'f.npy'
    r = run('--clip', tiny_clip[0], '--classes-file', str(f), '--out', str(out), '--heads', '4')
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(out), direct(tiny_clip[0], ['road', 'sky', 'tree'], ['a photo of a {}']), atol=1e-5)
    r = run('--clip', tiny_clip[0], '--classes', ' , ', '--out', str(out), '--heads', '4')
    assert r.returncode != 0 and 'empty' in r.stderr
    r = run('--clip', tiny_clip[0], '--classes', 'cat,dog,cat', '--out', str(out), '--heads', '4')
    assert r.returncode != 0 and "class names in --classes 'cat' (position 0) and 'cat' (position 2) are the same" in r.stderr
    r = run('--clip', str(tmp_path / 'ViT-B-16.pt'), '--classes', 'cat', '--out', str(out))
    assert r.returncode != 0 and 'CLIP checkpoint not found' in r.stderr


def test_published_files(tiny_clip, tmp_path):
    r = run('--clip', tiny_clip[0], '--published', '--out-dir', str(tmp_path), '--heads', '4')
    assert r.returncode == 0, r.stderr
    shapes = {f: np.load(tmp_path / f).shape for f in ('coco_stuff_multi.npy', 'voc20_single.npy', 'context59_multi.npy')}
    assert shapes == {'coco_stuff_multi.npy': (171, 32), 'voc20_single.npy': (20, 32), 'context59_multi.npy': (59, 32)}
    voc = np.load(tmp_path / 'voc20_single.npy')
    np.testing.assert_allclose(voc, direct(tiny_clip[0], list(ZeroPascalVOCDataset20.CLASSES), ['a photo of a {}']), atol=1e-5)


@pytest.mark.parametrize('text,names', [
    ('"ice cream, vanilla",dog', ['ice cream, vanilla', 'dog']),
    ('dog, "ice cream, vanilla",cat', ['dog', 'ice cream, vanilla', 'cat']),
    ('red flat\nblue dots\n\n"a, b"', ['red flat', 'blue dots', 'a, b']),
])
def test_class_lists_are_read_as_csv(text, names):
    from cascade_clip.utils.vocabulary_names import parse_class_list
    assert parse_class_list(text) == names


def test_empty_class_names_are_refused_with_their_position(tiny_clip, tmp_path):
    """A trailing comma or ",," is an error naming the position (the web demo's rule), for
    --classes and for the contents of --classes-file, before the CLIP file is read."""
    out = tmp_path / 'e.npy'
    r = run('--clip', tiny_clip[0], '--classes', 'cat, sofa,window,', '--out', str(out), '--heads', '4')
    assert r.returncode != 0
    assert ('error: --classes: class name(s) number 4 of 4 are empty (two commas in a row or a '
            'trailing comma?)') in r.stderr
    f = tmp_path / 'classes.txt'
    f.write_text('road\n\nsky,,tree\n')
    r = run('--clip', str(tmp_path / 'missing.pt'), '--classes-file', str(f), '--out', str(out))
    assert r.returncode != 0 and 'CLIP checkpoint not found' not in r.stderr
    assert f'error: {f}: class name(s) number 3 of 4 are empty' in r.stderr
    assert not out.exists()


def test_quoted_class_name_with_a_comma(tiny_clip, tmp_path):
    out = tmp_path / 'q.npy'
    r = run('--clip', tiny_clip[0], '--classes', '"ice cream, vanilla",dog', '--out', str(out),
            '--heads', '4')
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    assert arr.shape == (2, 32)  # two classes, not three
    np.testing.assert_allclose(arr, direct(tiny_clip[0], ['ice cream, vanilla', 'dog'],
                                           ['a photo of a {}']), atol=1e-5)


@pytest.mark.parametrize('dataset,n,first,last', [
    ('ade847', 847, 'wall', 'adding machine, totalizer, totaliser'),
    ('pc459', 459, 'accordion', 'wool'),
    ('voc21', 21, 'background', 'tvmonitor')])
def test_wide_vocabulary_and_voc21_class_lists(tiny_clip, tmp_path, dataset, n, first, last):
    out = tmp_path / f'{dataset}.npy'
    r = run('--clip', tiny_clip[0], '--dataset', dataset, '--out', str(out), '--heads', '4',
            '--batch-size', '512')
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    assert arr.shape == (n, 32)
    # rows in label order: the first and last rows are those names' embeddings
    np.testing.assert_allclose(arr[[0, -1]], direct(tiny_clip[0], [first, last], ['a photo of a {}']),
                               atol=1e-5)


def test_classes_file_in_windows_1252_is_named(tiny_clip, tmp_path):
    from tools import build_text_embeddings
    f = tmp_path / 'classes.txt'
    f.write_bytes('road\ncafé\n'.encode('cp1252'))  # é is the byte 0xe9, at offset 8
    out = tmp_path / 'e.npy'
    with pytest.raises(SystemExit) as e:
        build_text_embeddings.main(['--clip', tiny_clip[0], '--classes-file', str(f), '--out',
                                    str(out), '--heads', '4'])
    assert str(e.value) == (
        f'error: class file {f} is not UTF-8 text: byte 8 (line 2) is 0xe9 (invalid continuation '
        f'byte). Save it as UTF-8; a file from Windows (Windows-1252) converts with '
        f'`iconv -f WINDOWS-1252 -t UTF-8 {f} > {tmp_path}/classes.utf8.txt`')
    assert not out.exists()


def test_classes_file_with_a_byte_order_mark(tiny_clip, tmp_path):
    """A UTF-8 file from Windows: byte-order mark and CRLF line ends; the first name is
    "café", not "\\ufeffcafé"."""
    from tools import build_text_embeddings
    f = tmp_path / 'classes.txt'
    f.write_bytes(b'\xef\xbb\xbf' + 'café\r\nroad\r\n'.encode('utf-8'))
    out = tmp_path / 'e.npy'
    build_text_embeddings.main(['--clip', tiny_clip[0], '--classes-file', str(f), '--out',
                                str(out), '--heads', '4', '--device', 'cpu'])
    np.testing.assert_allclose(np.load(out), direct(tiny_clip[0], ['café', 'road'],
                                                    ['a photo of a {}']), atol=1e-6)


def test_output_is_written_whole_or_not_at_all(tiny_clip, tmp_path, monkeypatch):
    """A write that fails half way (disk full) leaves neither the output nor a temporary file,
    and a previous output of that name as it was."""
    import errno
    from tools import build_text_embeddings
    out = tmp_path / 'out' / 'e.npy'
    out.parent.mkdir()
    out.write_bytes(b'previous')

    def half_write(f, arr):
        f.write(b'\x93NUMPY')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(build_text_embeddings.np, 'save', half_write)
    with pytest.raises(OSError, match=f'could not write {out}: no space left on the device'):
        build_text_embeddings.main(['--clip', tiny_clip[0], '--classes', 'road', '--out',
                                    str(out), '--heads', '4', '--device', 'cpu'])
    assert sorted(p.name for p in out.parent.iterdir()) == ['e.npy']
    assert out.read_bytes() == b'previous'
