"""ADE20K-847, Pascal Context-459 (uint16 label maps, 65535 ignored) and VOC-21."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmseg.datasets import build_dataset
from PIL import Image

import cascade_clip  # noqa: F401

TEST_PIPE = [dict(type='LoadImageFromFile')]
IGN = 65535


def write_tif(path, label):
    mmcv.mkdir_or_exist(osp.dirname(path))
    Image.fromarray(label.astype(np.uint16)).save(path)


def write_jpg(path, hw):
    mmcv.imwrite(np.full((*hw, 3), 100, np.uint8), path)


def numpy_iou(preds, gts, n, ignore):
    """Per-class IoU over the set, NaN where a class is in neither (independent of MMSeg)."""
    inter, union = np.zeros(n), np.zeros(n)
    for p, g in zip(preds, gts):
        v = g != ignore
        for c in np.union1d(np.unique(p[v]), np.unique(g[v])):
            inter[c] += ((p == c) & (g == c) & v).sum()
            union[c] += (((p == c) | (g == c)) & v).sum()
    with np.errstate(invalid='ignore'):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


@pytest.fixture
def ade847(tmp_path):
    root = str(tmp_path / 'ADE20K_2021_17_01')
    # ids above 255 (wrapped onto other classes by an 8-bit loader) and the ignore value
    gts = [np.array([[0, 0, 300, 300], [846, 846, 300, IGN], [255, 1, 1, IGN]]),
           np.array([[300, 300, 300, 0], [IGN, IGN, 44, 44], [255, 255, 846, 0]])]
    for i, g in enumerate(gts):
        write_jpg(f'{root}/images_detectron2/validation/ADE_val_{i:08d}.jpg', g.shape)
        write_tif(f'{root}/annotations_detectron2/validation/ADE_val_{i:08d}.tif', g)
    return root, gts


def ade_cfg(root, **kw):
    cfg = dict(type='ZeroADE20KDataset847', data_root=root, img_dir='images_detectron2/validation',
               ann_dir='annotations_detectron2/validation', pipeline=TEST_PIPE, test_mode=True)
    cfg.update(kw)
    return cfg


def test_ade847_reads_uint16_ids_exactly_and_evaluates_against_numpy(ade847):
    root, gts = ade847
    ds = build_dataset(ade_cfg(root))
    assert len(ds) == 2 and len(ds.CLASSES) == 847 and ds.ignore_index == IGN
    assert ds.CLASSES[0] == 'wall' and ds.CLASSES[846] == 'adding machine, totalizer, totaliser'
    assert ds.CLASSES[300] == "altar, communion table, lord's table"
    g0 = ds.get_gt_seg_map_by_idx(0)
    assert g0.dtype == np.int64 and np.array_equal(g0, gts[0])
    # MMSeg's own loader would have wrapped 300 to 44 and 846 to 78
    assert (np.uint16(300) % 256, np.uint16(846) % 256) == (44, 78)
    preds = [np.array([[0, 1, 300, 300], [846, 78, 300, 5], [255, 1, 0, 7]]),
             np.array([[300, 44, 300, 0], [3, 3, 44, 44], [255, 0, 846, 0]])]
    res = ds.evaluate(preds, metric='mIoU')
    iou = numpy_iou(preds, gts, 847, IGN)
    assert np.isfinite(iou).sum() == 7  # 0, 1, 44, 78, 255, 300, 846
    assert res['mIoU'] == pytest.approx(np.nanmean(iou))
    assert res["IoU.altar, communion table, lord's table"] == pytest.approx(iou[300])
    assert res['IoU.wall'] == pytest.approx(iou[0])
    valid = [g != IGN for g in gts]
    acc = sum((p == g)[v].sum() for p, g, v in zip(preds, gts, valid)) / sum(v.sum() for v in valid)
    assert res['aAcc'] == pytest.approx(acc)
    assert not any(k in res for k in ('mIoU_seen', 'hIoU'))


def test_wide_label_pipeline_loader_and_value_check(ade847, tmp_path):
    root, gts = ade847
    pipe = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    ds = build_dataset(ade_cfg(root, pipeline=pipe))
    out = ds.prepare_train_img(1)  # the pipeline (not the test-mode path) loads the labels
    assert np.array_equal(out['gt_semantic_seg'], gts[1])
    write_tif(f'{root}/annotations_detectron2/validation/ADE_val_00000000.tif',
              np.array([[847, 0], [IGN, 2000]]))
    write_jpg(f'{root}/images_detectron2/validation/ADE_val_00000000.jpg', (2, 2))
    with pytest.raises(ValueError, match=r'ADE_val_00000000.tif holds values \[847, 2000\] .*0..846 '
                                         r'nor the ignore index 65535'):
        ds.prepare_train_img(0)


def test_ade847_and_pc459_refuse_training(ade847):
    root, _ = ade847
    with pytest.raises(ValueError, match='ZeroADE20KDataset847 is an evaluation-only dataset '
                                         r'\(847 classes.*train on another dataset'):
        build_dataset(ade_cfg(root, test_mode=False))


def test_pc459_layout_against_numpy(tmp_path):
    root = str(tmp_path / 'VOC2010')
    names = ['2008_000008', '2008_000021']
    gts = [np.array([[0, 458, 458], [IGN, 283, 430], [459 - 1, 0, 0]]),
           np.array([[283, 283, IGN], [IGN, 1, 1], [300, 300, 0]])]
    for n, g in zip(names, gts):
        write_jpg(f'{root}/JPEGImages/{n}.jpg', g.shape)
        write_tif(f'{root}/annotations_detectron2/pc459_val/{n}.tif', g)
    write_jpg(f'{root}/JPEGImages/2008_000099.jpg', (3, 3))  # not in the split
    mmcv.mkdir_or_exist(f'{root}/ImageSets/SegmentationContext')
    with open(f'{root}/ImageSets/SegmentationContext/val.txt', 'w') as f:
        f.write('\n'.join(names) + '\n')
    ds = build_dataset(dict(type='ZeroPascalContextDataset459', data_root=root, img_dir='JPEGImages',
                            ann_dir='annotations_detectron2/pc459_val',
                            split='ImageSets/SegmentationContext/val.txt', pipeline=TEST_PIPE,
                            test_mode=True))
    assert len(ds) == 2 and len(ds.CLASSES) == 459
    assert (ds.CLASSES[0], ds.CLASSES[283], ds.CLASSES[430], ds.CLASSES[458]) == \
        ('accordion', 'person', 'unknown', 'wool')
    preds = [np.array([[0, 458, 0], [1, 283, 430], [458, 0, 300]]),
             np.array([[283, 1, 1], [5, 1, 1], [300, 283, 0]])]
    res = ds.evaluate(preds, metric='mIoU')
    iou = numpy_iou(preds, gts, 459, IGN)
    assert res['mIoU'] == pytest.approx(np.nanmean(iou))
    assert res['IoU.person'] == pytest.approx(iou[283])


def test_voc21_background_is_a_class_against_numpy(tmp_path):
    root = str(tmp_path / 'VOC2012')
    raws = [np.array([[0, 0, 15, 15], [0, 255, 15, 20]]), np.array([[1, 1, 0, 0], [1, 255, 255, 0]])]
    names = ['2007_000033', '2007_000042']
    for n, r in zip(names, raws):
        write_jpg(f'{root}/JPEGImages/{n}.jpg', r.shape)
        mmcv.imwrite(r.astype(np.uint8), f'{root}/SegmentationClass/{n}.png')
    mmcv.mkdir_or_exist(f'{root}/ImageSets/Segmentation')
    with open(f'{root}/ImageSets/Segmentation/val.txt', 'w') as f:
        f.write('\n'.join(names) + '\n')
    ds = build_dataset(dict(type='ZeroPascalVOCDataset21', data_root=root, img_dir='JPEGImages',
                            ann_dir='SegmentationClass', split='ImageSets/Segmentation/val.txt',
                            pipeline=TEST_PIPE, test_mode=True))
    assert len(ds.CLASSES) == 21 and ds.CLASSES[0] == 'background' and ds.CLASSES[15] == 'person'
    assert np.array_equal(ds.get_gt_seg_map_by_idx(0), raws[0])  # no shift
    preds = [np.array([[0, 15, 15, 15], [0, 0, 15, 20]]), np.array([[1, 0, 0, 0], [1, 1, 1, 0]])]
    res = ds.evaluate(preds, metric='mIoU')
    iou = numpy_iou(preds, [r.astype(np.int64) for r in raws], 21, 255)
    assert res['IoU.background'] == pytest.approx(iou[0]) and 0 < iou[0] < 1
    assert res['mIoU'] == pytest.approx(np.nanmean(iou))
