"""Names from split files stay inside the dataset's folders; results keep their relative paths."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmseg.datasets import build_dataset

import cascade_clip  # noqa: F401
from cascade_clip.utils.paths import check_names_inside, escapes, join_inside

TEST_PIPE = [dict(type='LoadImageFromFile')]


def write(root, rel_img, rel_seg, value):
    mmcv.imwrite(np.full((4, 4, 3), 128, np.uint8), osp.join(root, 'img', rel_img))
    mmcv.imwrite(np.full((4, 4), value, np.uint8), osp.join(root, 'ann', rel_seg))


def dataset_cfg(root, **kw):
    return dict(type='ZeroShotDataset', data_root=root, img_dir='img', ann_dir='ann',
                classes=['a', 'b', 'c'], pipeline=TEST_PIPE, test_mode=True, **kw)


@pytest.mark.parametrize('bad', ['../../other/x', '/etc/passwd', 'sub/../../x', '../img/x'])
def test_split_entry_outside_the_dataset_is_refused_naming_file_line_entry(tmp_path, bad):
    root = str(tmp_path / 'data')
    write(root, 'x.jpg', 'x.png', 1)
    mmcv.imwrite(np.full((4, 4, 3), 128, np.uint8), str(tmp_path / 'other' / 'x.jpg'))
    split = osp.join(root, 'val.txt')
    with open(split, 'w') as f:
        f.write(f'x\n\n{bad}\n')  # line 3 (an empty line 2 counts, as MMSeg reads it)
    with pytest.raises(ValueError, match=rf"split file {split}, line 3: entry {bad!r} resolves "
                       r"outside the dataset folders .*data/img / .*data/ann"):
        build_dataset(dataset_cfg(root, split='val.txt'))


def test_split_entries_inside_the_dataset_are_kept(tmp_path):
    root = str(tmp_path / 'data')
    write(root, 'a/x.jpg', 'a/x.png', 1)
    write(root, 'b/x.jpg', 'b/x.png', 2)
    with open(osp.join(root, 'val.txt'), 'w') as f:
        f.write('a/x\nb/./x\n')
    ds = build_dataset(dataset_cfg(root, split='val.txt'))
    assert [i['filename'] for i in ds.img_infos] == ['a/x.jpg', 'b/./x.jpg']


def test_format_results_keeps_relative_paths_and_each_images_result(tmp_path):
    root = str(tmp_path / 'data')
    write(root, 'a/x.jpg', 'a/x.png', 1)
    write(root, 'b/x.jpg', 'b/x.png', 2)
    write(root, 'x.jpg', 'x.png', 0)
    ds = build_dataset(dataset_cfg(root))  # no split: the folder listing, sorted
    assert [i['filename'] for i in ds.img_infos] == ['a/x.jpg', 'b/x.jpg', 'x.jpg']
    out = str(tmp_path / 'out')
    preds = [np.full((4, 4), 1), np.full((4, 4), 2), np.zeros((4, 4), np.int64)]
    files = ds.format_results(preds[:2], out, indices=[0, 1])
    files += ds.format_results(preds[2:], out, indices=[2])  # a second batch
    assert files == [osp.join(out, 'a/x.png'), osp.join(out, 'b/x.png'), osp.join(out, 'x.png')]
    for f, want in zip(files, (1, 2, 0)):
        assert (mmcv.imread(f, flag='unchanged') == want).all(), f


def test_names_escaping_an_output_folder_are_refused(tmp_path):
    assert not any(escapes(n) for n in ('x.jpg', 'a/b/x.jpg', 'a/../x.jpg', './x', '..x/y'))
    assert all(escapes(n) for n in ('../x.jpg', '/tmp/x.jpg', 'a/../../x.jpg', '..'))
    show = str(tmp_path / 'show')
    assert join_inside(show, 'a/x.jpg') == osp.join(show, 'a/x.jpg')
    with pytest.raises(ValueError, match=rf"overlay name '../x.jpg' resolves outside the folder {show}"):
        check_names_inside(show, ['a/x.jpg', '../x.jpg'], 'overlay')
    with pytest.raises(ValueError, match=r"result file name '/abs/x.png' resolves outside"):
        join_inside(show, '/abs/x.png', 'result file')
    assert not osp.exists(show)


def test_names_are_checked_against_their_folder(tmp_path):
    img = str(tmp_path / 'img')
    assert not escapes('../img/x.jpg', img)  # back into the same folder
    assert escapes('../ann/x.png', img) and escapes('../img/x.jpg', str(tmp_path / 'ann'))
    assert escapes('../imgx/x.jpg', img)  # a sibling whose name starts the same
