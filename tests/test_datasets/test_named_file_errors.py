"""A dataset's file errors name the files: undecodable images when they are read, missing images
and label maps when the dataset is built (before any training)."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmseg.datasets import build_dataset

import cascade_clip  # noqa: F401

NAMES = ['cat', 'dog', 'cow']
TRAIN_PIPE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
              dict(type='RandomFlip', prob=0.5)]


def make(root, names=('a', 'b')):
    for n in names:
        mmcv.imwrite(np.full((8, 8, 3), 100, np.uint8), osp.join(root, 'img', f'{n}.jpg'))
        mmcv.imwrite(np.zeros((8, 8), np.uint8), osp.join(root, 'ann', f'{n}.png'))


def dataset(root, **kw):
    return build_dataset(dict(type='ZeroShotDataset', classes=NAMES, data_root=root, img_dir='img',
                              ann_dir='ann', pipeline=TRAIN_PIPE, **kw))


def test_truncated_jpeg_is_named(tmp_path):
    root = str(tmp_path)
    make(root)
    path = osp.join(root, 'img', 'b.jpg')
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:20])  # the header only: OpenCV decodes nothing
    ds = dataset(root)
    assert ds[0]['img'].shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r'cannot read image .*img/b.jpg \(sample 1\): the file is '
                       r'truncated, corrupt or not an image'):
        ds[1]
    test = build_dataset(dict(type='ZeroShotDataset', classes=NAMES, data_root=root, img_dir='img',
                              pipeline=[dict(type='LoadImageFromFile')], test_mode=True))
    with pytest.raises(ValueError, match=r'cannot read image .*img/b.jpg'):
        test[1]


def test_other_pipeline_errors_name_the_sample(tmp_path):
    root = str(tmp_path)
    make(root)
    # a pipeline step that fails on a readable image: its message gets the files appended
    ds = dataset(root)
    ds.pipeline.transforms[-1] = lambda results: results['no such key']
    with pytest.raises(KeyError, match=r"no such key.*sample 0: image .*img/a.jpg, label map .*ann/a.png"):
        ds[0]


def test_split_naming_missing_images_is_refused_at_build(tmp_path):
    root = str(tmp_path)
    make(root, names=('a', ))
    missing = [f'gone_{i}' for i in range(7)]
    (tmp_path / 'train.txt').write_text('\n'.join(['a'] + missing) + '\n')
    with pytest.raises(FileNotFoundError) as e:
        dataset(root, split='train.txt')
    msg = str(e.value)
    assert f'7 of the 8 images listed in the split {root}/train.txt do not exist: ' in msg
    assert f'{root}/img/gone_0.jpg, {root}/img/gone_1.jpg' in msg and '... (2 more)' in msg
    # label maps missing for several existing images: listed the same way
    make(root, names=('c', 'd', 'e'))
    for n in ('c', 'd'):
        (tmp_path / 'ann' / f'{n}.png').unlink()
    (tmp_path / 'val.txt').write_text('a\nc\nd\ne\n')
    with pytest.raises(FileNotFoundError, match=r'2 of the 4 label maps listed in the split .*val.txt do not exist: .*ann/c.png, '
                       r'.*ann/d.png$'):
        dataset(root, split='val.txt')


def test_split_file_with_a_byte_order_mark_lists_its_images(tmp_path):
    """An editor's invisible UTF-8 mark is not part of the first name (MMSeg would look for
    '\\ufeffa.jpg' and report that a.jpg does not exist)."""
    root = str(tmp_path)
    make(root, names=('a', 'b', 'c'))
    (tmp_path / 'val.txt').write_bytes(b'\xef\xbb\xbfa\r\nc\r\n')  # Windows editor: mark and CRLF
    ds = dataset(root, split='val.txt')
    assert [i['filename'] for i in ds.img_infos] == ['a.jpg', 'c.jpg']
    assert [i['ann']['seg_map'] for i in ds.img_infos] == ['a.png', 'c.png']
    assert ds[0]['img'].shape == (8, 8, 3)


def test_split_file_that_is_not_utf8_is_named_with_the_offset(tmp_path):
    root = str(tmp_path)
    make(root)
    (tmp_path / 'val.txt').write_bytes(b'a\nb\xe9\n')  # Latin-1
    with pytest.raises(ValueError, match=rf'split file {tmp_path}/val.txt is not UTF-8 text: byte 3 '
                       r'\(line 2\) is 0xe9 \(invalid continuation byte\)'):
        dataset(root, split='val.txt')
