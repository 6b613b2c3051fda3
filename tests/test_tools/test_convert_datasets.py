"""tools/convert_datasets/{ade20k_847,pascal_context_459}.py on tiny raw trees in the real formats."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import scipy.io
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IGN = 65535


def run(tool, *args):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools/convert_datasets', tool), *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1'))


def read_u16(path):
    a = np.asarray(Image.open(path))
    assert a.dtype == np.uint16
    return a


# ---------------------------------------------------------------- ADE20K-847
def seg_png(full_ids, extra_r=None):
    """ADE's colour code: R = full_id // 256 * 10 (+ 0..9, dropped by // 10), G = full_id % 256."""
    ids = np.asarray(full_ids)
    rgb = np.zeros((*ids.shape, 3), np.uint8)
    rgb[..., 0] = ids // 256 * 10 + (0 if extra_r is None else extra_r)
    rgb[..., 1] = ids % 256
    rgb[..., 2] = 7  # instance channel, not the class
    return rgb


def make_ade(tmp_path):
    raw = tmp_path / 'ADE20K_2021_17_01'
    # full-ADE ids: 2978 wall (train 0), 2420 sky (2), 3148 adding machine (846),
    # 5 and 0: not among the 847 (ignored)
    small = np.array([[2978, 2978, 2420], [5, 3148, 0]])
    big = np.zeros((600, 1200), np.int64)
    big[:, :600], big[:, 600:] = 2978, 2420
    files = [('validation/urban/street', 'ADE_val_00000001', small),
             ('validation/home/kitchen', 'ADE_val_00000002', big),
             ('training/urban/street', 'ADE_train_00000001', small)]
    index = dict(folder=[], filename=[], objectnames=[f'object {i}' for i in range(3200)],
                 objectPresence=np.zeros((3, 2), np.uint8))
    for sub, name, ids in files:
        d = raw / 'images/ADE' / sub
        d.mkdir(parents=True, exist_ok=True)
        mmcv.imwrite(np.full((*ids.shape, 3), 90, np.uint8), str(d / f'{name}.jpg'))
        extra = (np.arange(ids.size).reshape(ids.shape) % 10).astype(np.uint8) if ids.size < 10 else None
        Image.fromarray(seg_png(ids, extra)).save(d / f'{name}_seg.png')
        index['folder'].append(f'ADE20K_2021_17_01/images/ADE/{sub}')
        index['filename'].append(f'{name}.jpg')
    for name, i in (('wall', 2978), ('sky', 2420), ('adding machine, totalizer, totaliser', 3148)):
        index['objectnames'][i - 1] = name
    with open(raw / 'index_ade20k.pkl', 'wb') as f:
        pickle.dump(index, f)
    return raw


def test_ade847_converter_against_hand_label_maps(tmp_path):
    raw = make_ade(tmp_path)
    r = run('ade20k_847.py', str(raw), '--nproc', '2')
    assert r.returncode == 0, r.stderr
    assert '2 image(s) converted' in r.stdout + r.stderr
    # the fake index names only 3 of the 847 ids as expected: a release mismatch is flagged
    assert '844 of the 847 class ids name other objects' in r.stderr
    ann, img = raw / 'annotations_detectron2/validation', raw / 'images_detectron2/validation'
    assert sorted(os.listdir(ann)) == ['ADE_val_00000001.tif', 'ADE_val_00000002.tif']
    assert sorted(os.listdir(img)) == ['ADE_val_00000001.jpg', 'ADE_val_00000002.jpg']
    assert np.array_equal(read_u16(ann / 'ADE_val_00000001.tif'), [[0, 0, 2], [IGN, 846, IGN]])
    # 600 x 1200: shorter side capped at 512 -> 512 x 1024; nearest keeps the halves exact
    big = read_u16(ann / 'ADE_val_00000002.tif')
    expect = np.zeros((512, 1024), np.uint16)
    expect[:, 512:] = 2
    assert np.array_equal(big, expect)
    assert mmcv.imread(str(img / 'ADE_val_00000002.jpg')).shape == (512, 1024, 3)
    assert mmcv.imread(str(img / 'ADE_val_00000001.jpg')).shape == (2, 3, 3)
    assert not [f for d in (ann, img) for f in os.listdir(d) if '.tmp-' in f]
    # a re-run redoes nothing
    before = os.stat(ann / 'ADE_val_00000002.tif').st_mtime_ns
    r = run('ade20k_847.py', str(raw))
    assert r.returncode == 0 and '0 image(s) converted, 2 already done' in r.stdout + r.stderr
    assert os.stat(ann / 'ADE_val_00000002.tif').st_mtime_ns == before


def test_ade847_converter_checks_inputs_first_and_refuses_code_in_the_pickle(tmp_path):
    raw = make_ade(tmp_path)
    os.remove(raw / 'images/ADE/validation/home/kitchen/ADE_val_00000002_seg.png')
    r = run('ade20k_847.py', str(raw))
    assert r.returncode != 0 and 'ADE_val_00000002_seg.png' in r.stderr and 'missing' in r.stderr
    assert not (raw / 'annotations_detectron2').exists()  # nothing done before the check

    class Evil:
        def __reduce__(self):
            return (os.system, ('touch ' + str(tmp_path / 'pwned'), ))
    with open(raw / 'index_ade20k.pkl', 'wb') as f:
        pickle.dump(dict(folder=[], filename=[], x=Evil()), f)
    r = run('ade20k_847.py', str(raw))
    assert r.returncode != 0 and 'refused to load' in r.stderr and 'system' in r.stderr
    assert not (tmp_path / 'pwned').exists()
    r = run('ade20k_847.py', str(tmp_path / 'nowhere'))
    assert r.returncode != 0 and 'index_ade20k.pkl' in r.stderr


# ---------------------------------------------------------------- Pascal Context-459
def make_voc2010(tmp_path):
    root = tmp_path / 'VOC2010'
    maps = {'2008_000008': np.array([[0, 1, 459], [284, 284, 0]], np.uint16),
            '2008_000021': np.array([[431, 2], [2, 0], [459, 459]], np.uint16)}
    (root / 'trainval').mkdir(parents=True)
    for i, m in maps.items():
        mmcv.imwrite(np.zeros((*m.shape, 3), np.uint8), str(root / f'JPEGImages/{i}.jpg'))
        scipy.io.savemat(str(root / f'trainval/{i}.mat'), {'LabelMap': m})
    scipy.io.savemat(str(root / 'trainval/2008_000099.mat'), {'LabelMap': np.ones((2, 2), np.uint16)})
    mmcv.mkdir_or_exist(str(root / 'ImageSets/SegmentationContext'))
    (root / 'ImageSets/SegmentationContext/val.txt').write_text('2008_000008\n2008_000021\n')
    return root


def test_pc459_converter_against_hand_label_maps(tmp_path):
    root = make_voc2010(tmp_path)
    r = run('pascal_context_459.py', str(root), '--nproc', '2')
    assert r.returncode == 0, r.stderr
    out = root / 'annotations_detectron2/pc459_val'
    assert sorted(os.listdir(out)) == ['2008_000008.tif', '2008_000021.tif']  # val list only
    assert np.array_equal(read_u16(out / '2008_000008.tif'), [[IGN, 0, 458], [283, 283, IGN]])
    assert np.array_equal(read_u16(out / '2008_000021.tif'), [[430, 1], [1, IGN], [458, 458]])
    r = run('pascal_context_459.py', str(root))
    assert r.returncode == 0 and '0 label map(s) converted, 2 already done' in r.stdout + r.stderr


def test_pc459_converter_names_what_is_missing(tmp_path):
    root = make_voc2010(tmp_path)
    os.remove(root / 'trainval/2008_000021.mat')
    r = run('pascal_context_459.py', str(root))
    assert r.returncode != 0 and '2008_000021.mat' in r.stderr
    assert not (root / 'annotations_detectron2').exists()
    r = run('pascal_context_459.py', str(root), '--split', 'ImageSets/SegmentationContext/nope.txt')
    assert r.returncode != 0 and 'nope.txt' in r.stderr and 'validation list' in r.stderr
