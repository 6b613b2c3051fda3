"""tools/convert_datasets/*.py on tiny raw trees in the real formats; the wrappers of
MMSegmentation's converters run the installed converters on them."""
import builtins
import json
import logging
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import types
import zipfile

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
    from tools.convert_datasets import ade20k_847
    raw = make_ade(tmp_path)
    os.remove(raw / 'images/ADE/validation/home/kitchen/ADE_val_00000002_seg.png')
    with pytest.raises(SystemExit) as e:
        ade20k_847.main([str(raw)])
    assert '1 file(s) listed in' in str(e.value) and 'are missing, e.g. ' in str(e.value)
    assert 'ADE_val_00000002_seg.png' in str(e.value)
    assert not (raw / 'annotations_detectron2').exists()  # nothing done before the check

    class Evil:
        def __reduce__(self):
            return (os.system, ('touch ' + str(tmp_path / 'pwned'), ))
    with open(raw / 'index_ade20k.pkl', 'wb') as f:
        pickle.dump(dict(folder=[], filename=[], x=Evil()), f)
    with pytest.raises(SystemExit) as e:
        ade20k_847.main([str(raw)])
    assert 'refused to load posix.system' in str(e.value)
    assert not (tmp_path / 'pwned').exists()
    with pytest.raises(SystemExit) as e:
        ade20k_847.main([str(tmp_path / 'nowhere')])
    assert f'missing {tmp_path}/nowhere/index_ade20k.pkl' in str(e.value)


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


def test_pc459_converter_against_hand_label_maps(tmp_path, caplog):
    from tools.convert_datasets import pascal_context_459
    root = make_voc2010(tmp_path)
    pascal_context_459.main([str(root), '--nproc', '2'])
    out = root / 'annotations_detectron2/pc459_val'
    assert sorted(os.listdir(out)) == ['2008_000008.tif', '2008_000021.tif']  # val list only
    assert np.array_equal(read_u16(out / '2008_000008.tif'), [[IGN, 0, 458], [283, 283, IGN]])
    assert np.array_equal(read_u16(out / '2008_000021.tif'), [[430, 1], [1, IGN], [458, 458]])
    with caplog.at_level(logging.INFO):
        pascal_context_459.main([str(root)])
    assert f'0 label map(s) converted, 2 already done, into {out}' in caplog.text


def test_pc459_converter_names_what_is_missing(tmp_path):
    from tools.convert_datasets import pascal_context_459
    root = make_voc2010(tmp_path)
    os.remove(root / 'trainval/2008_000021.mat')
    with pytest.raises(SystemExit) as e:
        pascal_context_459.main([str(root)])
    assert f'are missing, e.g. {root}/trainval/2008_000021.mat' in str(e.value)
    assert not (root / 'annotations_detectron2').exists()
    with pytest.raises(SystemExit) as e:
        pascal_context_459.main([str(root), '--split', 'ImageSets/SegmentationContext/nope.txt'])
    assert f'missing: {root}/ImageSets/SegmentationContext/nope.txt (the validation list' in str(e.value)


def test_pc459_converter_names_a_truncated_mat_and_converts_the_others(tmp_path):
    root = make_voc2010(tmp_path)
    mat = root / 'trainval/2008_000008.mat'
    data = mat.read_bytes()
    mat.write_bytes(data[:len(data) // 2])
    from tools.convert_datasets import pascal_context_459
    with pytest.raises(SystemExit) as e:
        pascal_context_459.main([str(root), '--nproc', '1'])
    assert f'could not read {mat}' in str(e.value) and '1 of the 2 label map(s) failed' in str(e.value)
    out = root / 'annotations_detectron2/pc459_val'
    assert os.listdir(out) == ['2008_000021.tif']  # the other one is done; no partial file
    assert np.array_equal(read_u16(out / '2008_000021.tif'), [[430, 1], [1, IGN], [458, 458]])


def fail_half_way(monkeypatch):
    """PIL saves write half a file, then fail as on a full disk."""
    def save(self, fp, *args, **kwargs):
        with open(fp, 'wb') as f:
            f.write(b'half a file')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(Image.Image, 'save', save)


def test_pc459_converter_leaves_no_partial_file_when_a_write_fails(tmp_path, monkeypatch):
    root = make_voc2010(tmp_path)
    fail_half_way(monkeypatch)
    from tools.convert_datasets import pascal_context_459
    with pytest.raises(SystemExit) as e:
        pascal_context_459.main([str(root), '--nproc', '1'])
    out = root / 'annotations_detectron2/pc459_val'
    assert f'could not write {out / "2008_000008.tif"}: no space left on the device' in str(e.value)
    assert os.listdir(out) == []


def test_ade847_converter_names_an_empty_jpeg_and_converts_the_others(tmp_path):
    raw = make_ade(tmp_path)
    jpg = raw / 'images/ADE/validation/home/kitchen/ADE_val_00000002.jpg'
    jpg.write_bytes(b'')
    from tools.convert_datasets import ade20k_847
    with pytest.raises(SystemExit) as e:
        ade20k_847.main([str(raw), '--nproc', '1'])
    assert f'could not read {jpg}' in str(e.value) and '1 of the 2 image(s) failed' in str(e.value)
    ann, img = raw / 'annotations_detectron2/validation', raw / 'images_detectron2/validation'
    assert os.listdir(ann) == ['ADE_val_00000001.tif'] and os.listdir(img) == ['ADE_val_00000001.jpg']


# ---------------------------------------------------------------- MMSegmentation's converters
def png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def make_coco(tmp_path):
    """Two COCO-Stuff label maps in the release's ids (0-181 with gaps, 255 unlabelled)."""
    root = tmp_path / 'coco_stuff164k'
    for split, name, ids in (('train2017', '000000000009', [[0, 12, 181], [255, 91, 40]]),
                             ('val2017', '000000000139', [[40, 91], [255, 0]])):
        png(root / f'annotations/{split}/{name}.png', ids)
        mmcv.imwrite(np.zeros((2, 2, 3), np.uint8), str(root / f'images/{split}/{name}.jpg'))
    return root


def test_coco_stuff164k_runs_mmsegs_converter(tmp_path, monkeypatch, caplog):
    from tools.convert_datasets import coco_stuff164k
    root = make_coco(tmp_path)
    with pytest.raises(SystemExit) as e:  # the real release sizes: the tiny tree is refused
        coco_stuff164k.main([str(root), '--nproc', '1'])
    assert f'{root}/annotations/train2017 holds 1 (expected 118287)' in str(e.value)
    monkeypatch.setattr(coco_stuff164k, 'SPLIT_SIZES', {'train2017': 1, 'val2017': 1})
    with caplog.at_level(logging.INFO):
        coco_stuff164k.main([str(root), '--nproc', '1'])
    # ids without the 11 unused ones (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90): 12 -> 11,
    # 40 -> 36, 91 -> 80, 181 -> 170; 255 stays
    ann = root / 'annotations'
    assert np.array_equal(np.asarray(Image.open(ann / 'train2017/000000000009_labelTrainIds.png')),
                          [[0, 11, 170], [255, 80, 36]])
    assert np.array_equal(np.asarray(Image.open(ann / 'val2017/000000000139_labelTrainIds.png')),
                          [[36, 80], [255, 0]])
    assert np.array_equal(np.asarray(Image.open(ann / 'train2017/000000000009.png')),
                          [[0, 12, 181], [255, 91, 40]])  # the release's file untouched
    assert sorted(os.listdir(ann / 'val2017')) == ['000000000139.png', '000000000139_labelTrainIds.png']
    assert '1 + 1 label maps (ids 0-170, 255 ignored) written' in caplog.text


def test_coco_stuff164k_as_a_command_checks_the_release_size(tmp_path):
    root = make_coco(tmp_path)
    r = run('coco_stuff164k.py', str(root), '--nproc', '1')
    assert r.returncode == 1 and 'not the full COCO-Stuff 164k release' in r.stderr
    assert f'{root}/images/val2017 holds 1 (expected 5000)' in r.stderr
    assert not (root / 'annotations/train2017/000000000009_labelTrainIds.png').exists()


def test_coco_stuff164k_checks_inputs_names_a_broken_label_map_and_writes_whole(tmp_path, monkeypatch):
    from tools.convert_datasets import coco_stuff164k
    monkeypatch.setattr(coco_stuff164k, 'SPLIT_SIZES', {'train2017': 1, 'val2017': 1})
    root = make_coco(tmp_path)
    shutil.rmtree(root / 'images/val2017')
    with pytest.raises(SystemExit) as e:
        coco_stuff164k.main([str(root), '--nproc', '1'])
    assert f'missing: {root}/images/val2017 (val2017.zip of COCO 2017' in str(e.value)
    root = make_coco(tmp_path / 'again')
    broken = root / 'annotations/val2017/000000000139.png'  # truncated in its pixel data
    png(broken, np.random.RandomState(0).randint(0, 182, (64, 64)))
    broken.write_bytes(broken.read_bytes()[:2000])
    with pytest.raises(SystemExit) as e:
        coco_stuff164k.main([str(root), '--nproc', '1'])
    assert f'could not read {broken}' in str(e.value)
    assert not [f for f in os.listdir(root / 'annotations/val2017') if f != '000000000139.png']
    root = make_coco(tmp_path / 'full_disk')
    fail_half_way(monkeypatch)
    with pytest.raises(SystemExit) as e:
        coco_stuff164k.main([str(root), '--nproc', '1'])
    assert 'could not write' in str(e.value) and 'no space left on the device' in str(e.value)
    for split in ('train2017', 'val2017'):
        assert len(os.listdir(root / 'annotations' / split)) == 1  # the release's file only


def make_voc_aug(tmp_path):
    """VOC 2012 train A, val B; SBD train C + A, val D + B: the training list is A C D, the
    SBD-only list (aug.txt) C D."""
    devkit, sbd = tmp_path / 'VOCdevkit', tmp_path / 'VOCdevkit/VOCaug/dataset'
    voc = devkit / 'VOC2012'
    ids = dict(A='2007_000032', B='2007_000033', C='2008_000002', D='2008_000003')
    segs = {}
    for k, i in ids.items():
        mmcv.imwrite(np.zeros((2, 3, 3), np.uint8), str(voc / f'JPEGImages/{i}.jpg'))
        segs[i] = (np.arange(6).reshape(2, 3) + 3 * ord(k) % 15).astype(np.uint8)
        (sbd / 'cls').mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(sbd / f'cls/{i}.mat'),
                         {'GTcls': {'Segmentation': segs[i], 'CategoriesPresent': np.array([1])}})
    (voc / 'SegmentationClass').mkdir()
    (voc / 'ImageSets/Segmentation').mkdir(parents=True)
    (voc / 'ImageSets/Segmentation/train.txt').write_text(ids['A'] + '\n')
    (voc / 'ImageSets/Segmentation/val.txt').write_text(ids['B'] + '\n')
    (sbd / 'train.txt').write_text(f'{ids["C"]}\n{ids["A"]}\n')
    (sbd / 'val.txt').write_text(f'{ids["D"]}\n{ids["B"]}\n')
    return devkit, sbd.parent, ids, segs


def test_voc_aug_runs_mmsegs_converter(tmp_path, monkeypatch, caplog):
    from tools.convert_datasets import voc_aug
    devkit, aug, ids, segs = make_voc_aug(tmp_path)
    with pytest.raises(SystemExit) as e:  # the real release's list sizes
        voc_aug.main([str(devkit), str(aug)])
    assert 'the split lists give 3 training ids' in str(e.value) and '10582' in str(e.value)
    monkeypatch.setattr(voc_aug, 'AUG_LEN', 3)
    with caplog.at_level(logging.INFO):
        voc_aug.main([str(devkit), str(aug), '--nproc', '1'])
    out = devkit / 'VOC2012/SegmentationClassAug'
    assert sorted(os.listdir(out)) == sorted(f'{i}.png' for i in ids.values())
    for i, seg in segs.items():
        assert np.array_equal(np.asarray(Image.open(out / f'{i}.png')), seg)
    lists = devkit / 'VOC2012/ImageSets/Segmentation'
    assert sorted((lists / 'trainaug.txt').read_text().split()) == sorted([ids['A'], ids['C'], ids['D']])
    assert sorted((lists / 'aug.txt').read_text().split()) == sorted([ids['C'], ids['D']])
    assert 'trainaug.txt (3 ids) and aug.txt (2 ids)' in caplog.text


def test_voc_aug_checks_inputs_and_names_a_truncated_mat(tmp_path, monkeypatch):
    from tools.convert_datasets import voc_aug
    monkeypatch.setattr(voc_aug, 'AUG_LEN', 3)
    devkit, aug, ids, _ = make_voc_aug(tmp_path)
    os.remove(devkit / f'VOC2012/JPEGImages/{ids["D"]}.jpg')
    with pytest.raises(SystemExit) as e:
        voc_aug.main([str(devkit), str(aug)])
    assert f'1 file(s) of the 2 ids of aug.txt are missing, e.g. {devkit}/VOC2012/JPEGImages/{ids["D"]}.jpg' \
        in str(e.value)
    assert not (devkit / 'VOC2012/SegmentationClassAug').exists()
    devkit, aug, ids, _ = make_voc_aug(tmp_path / 'again')
    mat = aug / f'dataset/cls/{ids["C"]}.mat'
    mat.write_bytes(mat.read_bytes()[:100])
    with pytest.raises(SystemExit) as e:
        voc_aug.main([str(devkit), str(aug)])
    assert f'could not read {mat}' in str(e.value)
    assert f'{ids["C"]}.png' not in os.listdir(devkit / 'VOC2012/SegmentationClassAug')
    assert not (devkit / 'VOC2012/ImageSets/Segmentation/aug.txt').exists()


def make_context(tmp_path):
    devkit = tmp_path / 'VOCdevkit'
    (devkit / 'VOC2010/JPEGImages').mkdir(parents=True)
    # full Pascal Context ids: 0 background, 2 aeroplane, 9 bag, 18 bed, 115 door, 259 mountain,
    # 440 wall, 458 wood
    masks = dict(train=[dict(file_name='2008_000002.jpg', mask=[[0, 2, 458], [259, 115, 0]])],
                 val=[dict(file_name='2008_000008.jpg', mask=[[9, 18], [440, 0]])])
    json_path = devkit / 'VOC2010/trainval_merged.json'
    json_path.write_text(json.dumps(masks))
    return devkit, json_path


class FakeDetail:
    """The two calls of the Detail API that MMSeg's converter makes, on a json of masks."""

    def __init__(self, json_path, img_dir, phase):
        self.images = json.load(open(json_path))[phase]

    def getImgs(self):
        return [dict(file_name=i['file_name']) for i in self.images]

    def getMask(self, img):
        return np.array([i['mask'] for i in self.images if i['file_name'] == img['file_name']][0])


def test_pascal_context_says_what_to_install_without_the_detail_api(tmp_path, monkeypatch):
    from tools.convert_datasets import pascal_context
    monkeypatch.setitem(sys.modules, 'detail', None)  # not installed
    devkit, json_path = make_context(tmp_path)
    with pytest.raises(SystemExit) as e:
        pascal_context.main([str(devkit), str(json_path)])
    assert 'needs the Detail API' in str(e.value) and 'not on PyPI' in str(e.value)
    assert "pip install 'git+https://github.com/zhanghang1989/detail-api.git#subdirectory=PythonAPI'" \
        in str(e.value)
    assert not (devkit / 'VOC2010/SegmentationClassContext').exists()
    os.remove(json_path)
    with pytest.raises(SystemExit) as e:
        pascal_context.main([str(devkit), str(json_path)])
    assert f'missing: {json_path} (trainval_merged.json' in str(e.value)


def test_pascal_context_runs_mmsegs_converter(tmp_path, monkeypatch):
    from tools.convert_datasets import pascal_context
    monkeypatch.setitem(sys.modules, 'detail', types.SimpleNamespace(Detail=FakeDetail))
    devkit, json_path = make_context(tmp_path)
    pascal_context.main([str(devkit), str(json_path)])
    # the 59 classes in the order of their full ids (1-59), background 0
    out = devkit / 'VOC2010/SegmentationClassContext'
    assert np.array_equal(np.asarray(Image.open(out / '2008_000002.png')), [[0, 1, 59], [35, 24, 0]])
    assert np.array_equal(np.asarray(Image.open(out / '2008_000008.png')), [[2, 3], [56, 0]])
    lists = devkit / 'VOC2010/ImageSets/SegmentationContext'
    assert (lists / 'train.txt').read_text() == '2008_000002\n'
    assert (lists / 'val.txt').read_text() == '2008_000008\n'
    assert sorted(os.listdir(lists)) == ['train.txt', 'val.txt']  # no temporary file left


def test_a_missing_mmseg_converter_is_named(tmp_path, monkeypatch):
    import mmseg

    from tools.convert_datasets import coco_stuff164k
    monkeypatch.setattr(mmseg, '__file__', str(tmp_path / 'mmseg/__init__.py'))
    monkeypatch.setattr(coco_stuff164k, 'SPLIT_SIZES', {'train2017': 1, 'val2017': 1})
    root = make_coco(tmp_path)
    with pytest.raises(SystemExit) as e:
        coco_stuff164k.main([str(root)])
    assert f'has no converter {tmp_path}/mmseg/.mim/tools/convert_datasets/coco_stuff164k.py' \
        in str(e.value)


# ---------------------------------------------------------------- ADE20K-150
def ade_zip(path, names, extra=()):
    with zipfile.ZipFile(path, 'w') as z:
        for name in names:
            z.writestr(f'ADEChallengeData2016/{name}', name.encode())
        for name in extra:
            z.writestr(name, b'x')
    return path


ADE150 = ['images/training/ADE_train_00000001.jpg', 'images/training/ADE_train_00000002.jpg',
          'images/validation/ADE_val_00000001.jpg', 'annotations/training/ADE_train_00000001.png',
          'annotations/training/ADE_train_00000002.png', 'annotations/validation/ADE_val_00000001.png',
          'objectInfo150.txt', 'sceneCategories.txt']


def test_ade20k_150_unpacks_the_zip_whole_and_checks_a_folder(tmp_path, monkeypatch, caplog):
    from tools.convert_datasets import ade20k_150
    zip_path = ade_zip(tmp_path / 'ADEChallengeData2016.zip', ADE150)
    out = tmp_path / 'datasets'
    with pytest.raises(SystemExit) as e:  # the real release sizes
        ade20k_150.main([str(zip_path), '-o', str(out)])
    assert 'images/training holds 2 .jpg files (expected 20210)' in str(e.value)
    assert not out.exists()
    monkeypatch.setattr(ade20k_150, 'SPLIT_SIZES', {'training': 2, 'validation': 1})
    with caplog.at_level(logging.INFO):
        ade20k_150.main([str(zip_path), '-o', str(out)])
    assert os.listdir(out) == ['ADEChallengeData2016']  # no temporary folder left
    root = out / 'ADEChallengeData2016'
    assert sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file()) == sorted(ADE150)
    assert (root / 'images/validation/ADE_val_00000001.jpg').read_bytes() == \
        b'images/validation/ADE_val_00000001.jpg'
    assert 'with 2 training and 1 validation pairs' in caplog.text
    with pytest.raises(SystemExit) as e:
        ade20k_150.main([str(zip_path), '-o', str(out)])
    assert f'{root} exists and is not overwritten' in str(e.value)
    ade20k_150.main([str(root)])  # the unpacked folder checks
    os.remove(root / 'annotations/training/ADE_train_00000002.png')
    with pytest.raises(SystemExit) as e:
        ade20k_150.main([str(root)])
    assert "1 of images/training have no annotations/training/<id>.png, e.g. ['ADE_train_00000002']" \
        in str(e.value)


def test_ade20k_150_refuses_a_zip_with_members_outside_its_folder(tmp_path, monkeypatch):
    from tools.convert_datasets import ade20k_150
    monkeypatch.setattr(ade20k_150, 'SPLIT_SIZES', {'training': 2, 'validation': 1})
    out = tmp_path / 'work/datasets'
    for bad in ('../x', 'ADEChallengeData2016/../../../x', '/tmp/x'):
        zip_path = ade_zip(tmp_path / 'evil.zip', ADE150, extra=[bad])
        with pytest.raises(SystemExit) as e:
            ade20k_150.main([str(zip_path), '-o', str(out)])
        assert 'would be written outside the folder it is unpacked into' in str(e.value)
        assert repr(bad) in str(e.value)
        assert not out.exists() and not (tmp_path / 'work/x').exists() and not (tmp_path / 'x').exists()
    zip_path = ade_zip(tmp_path / 'incomplete.zip', ADE150[1:])
    with pytest.raises(SystemExit) as e:
        ade20k_150.main([str(zip_path), '-o', str(out)])
    assert 'images/training holds 1 .jpg files (expected 2)' in str(e.value)
    assert not out.exists()


def test_voc_aug_writes_its_split_lists_whole(tmp_path, monkeypatch):
    from tools.convert_datasets import voc_aug
    monkeypatch.setattr(voc_aug, 'AUG_LEN', 3)
    devkit, aug, _, _ = make_voc_aug(tmp_path)
    real_open = builtins.open

    class HalfWriter:
        """A text file that writes its first line, then fails as on a full disk."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def writelines(self, lines):
            self.f.write(next(iter(lines)))
            raise OSError(28, 'No space left on device')

    def open_(path, mode='r', *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return HalfWriter(f) if 'w' in mode and str(path).endswith('.txt') else f
    monkeypatch.setattr(builtins, 'open', open_)
    lists = devkit / 'VOC2012/ImageSets/Segmentation'
    with pytest.raises(SystemExit) as e:
        voc_aug.main([str(devkit), str(aug)])
    assert f'could not write {lists}/trainaug.txt: no space left on the device' in str(e.value)
    assert sorted(os.listdir(lists)) == ['train.txt', 'val.txt']
