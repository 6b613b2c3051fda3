import os.path as osp

import mmcv
import numpy as np
import pytest
from mmseg.datasets import build_dataset

import cascade_clip  # noqa: F401
from cascade_clip.datasets import harmonic_iou

TRAIN_PIPE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
TEST_PIPE = [dict(type='LoadImageFromFile')]


def write(root, img_rel, seg_rel, label, img_hw=None):
    h, w = img_hw or label.shape
    mmcv.imwrite(np.full((h, w, 3), 128, np.uint8), osp.join(root, img_rel))
    mmcv.imwrite(label.astype(np.uint8), osp.join(root, seg_rel))


def hand_metrics(preds, gts, n, ignore=255):
    """Per-class IoU over the whole set (NaN where a class is in neither)."""
    inter = np.zeros(n)
    union = np.zeros(n)
    correct = total = 0
    for p, g in zip(preds, gts):
        valid = g != ignore
        correct += (p[valid] == g[valid]).sum()
        total += valid.sum()
        for c in range(n):
            inter[c] += ((p == c) & (g == c) & valid).sum()
            union[c] += (((p == c) | (g == c)) & valid).sum()
    with np.errstate(invalid='ignore', divide='ignore'):
        return inter / union, correct / total


# ---------------------------------------------------------------- COCO-Stuff layout
@pytest.fixture
def coco(tmp_path):
    root = str(tmp_path / 'coco_stuff164k')
    gts = [np.array([[0, 0, 19, 19], [0, 0, 19, 19], [5, 5, 255, 255], [5, 5, 160, 160]]),
           np.array([[19, 19, 19, 19], [0, 0, 0, 0], [160, 160, 5, 5], [255, 255, 5, 5]])]
    for i, g in enumerate(gts):
        write(root, f'images/val2017/{i:012d}.jpg', f'annotations/val2017/{i:012d}_labelTrainIds.png', g)
    return root, gts


def coco_cfg(root, **kw):
    cfg = dict(type='ZeroCOCOStuffDataset', data_root=root, img_dir='images/val2017',
               ann_dir='annotations/val2017', pipeline=TEST_PIPE, test_mode=True,
               unseen_classes=[19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160])
    cfg.update(kw)
    return cfg


def test_coco_layout_seen_unseen_hiou_against_hand_metrics(coco):
    root, gts = coco
    ds = build_dataset(coco_cfg(root))
    assert len(ds) == 2 and len(ds.CLASSES) == 171 and ds.CLASSES[19] == 'cow'
    preds = [np.array([[0, 19, 19, 19], [0, 0, 19, 5], [5, 5, 0, 0], [5, 0, 160, 160]]),
             np.array([[19, 19, 0, 0], [0, 0, 0, 160], [160, 5, 5, 5], [5, 5, 5, 5]])]
    # the test loop's pre_eval path and the plain-predictions path agree
    pre = [r for i, p in enumerate(preds) for r in ds.pre_eval(p, i)]
    res = ds.evaluate(pre, metric='mIoU')
    res2 = ds.evaluate(preds, metric='mIoU')
    iou, acc = hand_metrics(preds, gts, 171)
    seen = [c for c in (0, 5) if not np.isnan(iou[c])]
    unseen = [c for c in (19, 160)]
    S, U = np.nanmean(iou[seen]), np.nanmean(iou[unseen])
    assert res['aAcc'] == pytest.approx(acc)
    assert res['mIoU'] == pytest.approx(np.nanmean(iou))
    assert res['mIoU_seen'] == pytest.approx(S)
    assert res['mIoU_unseen'] == pytest.approx(U)
    assert res['hIoU'] == pytest.approx(2 * S * U / (S + U))
    assert res['IoU.cow'] == pytest.approx(iou[19])
    assert res['IoU.person'] == pytest.approx(iou[0])
    for k in ('mIoU', 'mIoU_seen', 'mIoU_unseen', 'hIoU', 'aAcc'):
        assert res2[k] == pytest.approx(res[k])


def test_harmonic_iou():
    assert harmonic_iou(0.4, 0.6) == pytest.approx(0.48)
    assert harmonic_iou(0.0, 0.0) == 0.0
    assert np.isnan(harmonic_iou(float('nan'), 0.3))


def test_cross_dataset_mode_reports_plain_miou(coco):
    root, gts = coco
    ds = build_dataset(coco_cfg(root, unseen_classes=[]))
    preds = [g.copy() for g in gts]
    res = ds.evaluate(preds, metric='mIoU')
    assert res['mIoU'] == pytest.approx(1.0)
    assert not any(k in res for k in ('mIoU_seen', 'mIoU_unseen', 'hIoU'))


# ---------------------------------------------------------------- VOC and Context layouts
def make_voc(tmp_path, context=False):
    root = str(tmp_path / ('VOC2010' if context else 'VOC2012'))
    ann = 'SegmentationClassContext' if context else 'SegmentationClass'
    split = 'ImageSets/SegmentationContext/val.txt' if context else 'ImageSets/Segmentation/val.txt'
    # raw maps: 0 = background (ignored after reduce_zero_label), 255 = boundary
    raws = [np.array([[0, 1, 1, 16], [0, 1, 1, 16], [255, 16, 16, 16], [0, 0, 3, 3]]),
            np.array([[3, 3, 0, 0], [3, 3, 1, 1], [17, 17, 1, 1], [17, 17, 255, 0]])]
    names = ['2007_000001', '2007_000002']
    for n, r in zip(names, raws):
        write(root, f'JPEGImages/{n}.jpg', f'{ann}/{n}.png', r)
    mmcv.mkdir_or_exist(osp.join(root, osp.dirname(split)))
    with open(osp.join(root, split), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return root, ann, split, raws


def reduce(raw):
    g = raw.astype(np.int64) - 1
    g[(raw == 0) | (raw == 255)] = 255
    return g


@pytest.mark.parametrize('context', [False, True])
def test_voc_and_context_layouts(tmp_path, context):
    root, ann, split, raws = make_voc(tmp_path, context)
    typ = 'ZeroPascalVOCDataset59' if context else 'ZeroPascalVOCDataset20'
    unseen = [0, 2, 3, 7, 9, 13, 17, 19, 31, 37] if context else [15, 16, 17, 18, 19]
    ds = build_dataset(dict(type=typ, data_root=root, img_dir='JPEGImages', ann_dir=ann, split=split,
                            pipeline=TEST_PIPE, test_mode=True, unseen_classes=unseen))
    n = 59 if context else 20
    assert len(ds) == 2 and len(ds.CLASSES) == n
    gts = [reduce(r) for r in raws]
    assert np.array_equal(ds.get_gt_seg_map_by_idx(0), gts[0])
    preds = [np.where(g == 255, 0, g) for g in gts]
    preds[0][0, 1] = 15
    preds[1][2, 0] = 2
    res = ds.evaluate(preds, metric='mIoU')
    iou, acc = hand_metrics(preds, gts, n)
    seen = [c for c in range(n) if c not in unseen]
    S, U = np.nanmean(iou[seen]), np.nanmean(iou[unseen])
    assert res['mIoU_seen'] == pytest.approx(S)
    assert res['mIoU_unseen'] == pytest.approx(U)
    assert res['hIoU'] == pytest.approx(2 * S * U / (S + U))
    assert res['aAcc'] == pytest.approx(acc)
    # the training pipeline reduces the zero label the same way
    train = build_dataset(dict(type=typ, data_root=root, img_dir='JPEGImages', ann_dir=ann,
                               split=split, pipeline=TRAIN_PIPE, unseen_classes=unseen))
    assert np.array_equal(train[0]['gt_semantic_seg'], gts[0])


# ---------------------------------------------------------------- clear errors
def test_missing_data_root_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match='data root not found: .*nowhere'):
        build_dataset(coco_cfg(str(tmp_path / 'nowhere')))
    root, ann, split, _ = make_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match='split file not found: .*missing.txt'):
        build_dataset(dict(type='ZeroPascalVOCDataset20', data_root=root, img_dir='JPEGImages',
                           ann_dir=ann, split='ImageSets/Segmentation/missing.txt', pipeline=TEST_PIPE))


def test_image_without_label_map(coco):
    root, _ = coco
    mmcv.imwrite(np.zeros((4, 4, 3), np.uint8), osp.join(root, 'images/val2017/orphan.jpg'))
    with pytest.raises(FileNotFoundError, match='orphan.jpg has no label map: .*orphan_labelTrainIds.png'):
        build_dataset(coco_cfg(root))


def test_label_map_of_wrong_size(tmp_path):
    root = str(tmp_path / 'c')
    write(root, 'images/train2017/a.jpg', 'annotations/train2017/a_labelTrainIds.png',
          np.zeros((4, 4)), img_hw=(4, 6))
    ds = build_dataset(coco_cfg(root, img_dir='images/train2017', ann_dir='annotations/train2017',
                                pipeline=TRAIN_PIPE, test_mode=False))
    with pytest.raises(ValueError, match=r'a_labelTrainIds.png has size \(4, 4\).*has \(4, 6\)'):
        ds[0]


def test_label_values_outside_classes(tmp_path):
    root = str(tmp_path / 'c')
    write(root, 'images/train2017/a.jpg', 'annotations/train2017/a_labelTrainIds.png',
          np.array([[0, 171], [200, 255]]))
    ds = build_dataset(coco_cfg(root, img_dir='images/train2017', ann_dir='annotations/train2017',
                                pipeline=TRAIN_PIPE, test_mode=False))
    with pytest.raises(ValueError, match=r'a_labelTrainIds.png holds values \[171, 200\]'):
        ds[0]
    with pytest.raises(ValueError, match=r'holds values \[171, 200\]'):
        ds.pre_eval(np.zeros((2, 2), np.int64), 0)
    with pytest.raises(ValueError, match=r'prediction of size \(3, 3\)'):
        ds.pre_eval(np.zeros((3, 3), np.int64), 0)


def test_unseen_classes_outside_range(coco):
    root, _ = coco
    with pytest.raises(ValueError, match=r'unseen_classes \[171\]'):
        build_dataset(coco_cfg(root, unseen_classes=[3, 171]))


def test_empty_image_folder(tmp_path):
    root = tmp_path / 'empty'
    (root / 'images/val2017').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images ending in '.jpg'"):
        build_dataset(coco_cfg(str(root)))


def test_format_results_writes_dataset_ids(tmp_path):
    root, ann, split, raws = make_voc(tmp_path)
    ds = build_dataset(dict(type='ZeroPascalVOCDataset20', data_root=root, img_dir='JPEGImages',
                            ann_dir=ann, split=split, pipeline=TEST_PIPE, test_mode=True))
    preds = [np.full((4, 4), 3), np.full((4, 4), 19)]
    files = ds.format_results(preds, str(tmp_path / 'out'), indices=[0, 1])
    assert [osp.basename(f) for f in files] == ['2007_000001.png', '2007_000002.png']
    assert (mmcv.imread(files[1], flag='unchanged') == 20).all()  # background back at 0


# ---------------------------------------------------------------- ADE20K-150 layout
def test_ade150_layout_reduces_zero_label_against_numpy(tmp_path):
    root = str(tmp_path / 'ADEChallengeData2016')
    # raw ADE maps: 0 = "other" (ignored), 1..150 = classes (1 wall, 3 sky, 150 flag)
    raws = [np.array([[0, 1, 1, 3], [0, 1, 1, 3], [150, 150, 3, 3], [150, 0, 0, 3]]),
            np.array([[3, 3, 3, 3], [1, 1, 0, 0], [1, 1, 150, 150], [0, 0, 150, 150]])]
    for i, r in enumerate(raws):
        for split in ('training', 'validation'):
            write(root, f'images/{split}/ADE_{split[:3]}_{i:08d}.jpg',
                  f'annotations/{split}/ADE_{split[:3]}_{i:08d}.png', r)
    ds = build_dataset(dict(type='ZeroADE20KDataset150', data_root=root, img_dir='images/validation',
                            ann_dir='annotations/validation', pipeline=TEST_PIPE, test_mode=True))
    assert len(ds) == 2 and len(ds.CLASSES) == 150
    assert ds.CLASSES[0] == 'wall' and ds.CLASSES[2] == 'sky' and ds.CLASSES[149] == 'flag'
    # expected ground truth written out by hand: raw - 1, raw 0 -> 255
    gt0 = np.array([[255, 0, 0, 2], [255, 0, 0, 2], [149, 149, 2, 2], [149, 255, 255, 2]])
    assert np.array_equal(ds.get_gt_seg_map_by_idx(0), gt0)
    preds = [np.array([[7, 0, 2, 2], [0, 0, 0, 2], [149, 0, 2, 2], [149, 5, 5, 0]]),
             np.array([[2, 2, 1, 2], [0, 0, 1, 1], [0, 149, 149, 149], [3, 3, 149, 2]])]
    res = ds.evaluate(preds, metric='mIoU')
    # independent numpy computation over the valid (non-ignored) pixels of both images
    gts = [np.where(r == 0, 255, r.astype(np.int64) - 1) for r in raws]
    ious = []
    for c in range(150):
        inter = sum(((p == c) & (g == c)).sum() for p, g in zip(preds, gts))
        union = sum((((p == c) | (g == c)) & (g != 255)).sum() for p, g in zip(preds, gts))
        if union:
            ious.append(inter / union)
    valid = sum((g != 255).sum() for g in gts)
    correct = sum(((p == g) & (g != 255)).sum() for p, g in zip(preds, gts))
    # classes 0, 2, 149 in the ground truth; 1 predicted on valid pixels (IoU 0); 3, 5, 7 only on ignored
    assert len(ious) == 4
    assert res['mIoU'] == pytest.approx(np.mean(ious))
    assert res['aAcc'] == pytest.approx(correct / valid)
    assert res['IoU.wall'] == pytest.approx(ious[0])
    assert not any(k in res for k in ('mIoU_seen', 'mIoU_unseen', 'hIoU'))
    train = build_dataset(dict(type='ZeroADE20KDataset150', data_root=root, img_dir='images/training',
                               ann_dir='annotations/training', pipeline=TRAIN_PIPE))
    assert np.array_equal(train[0]['gt_semantic_seg'], gt0)


# ---------------------------------------------------------------- Pascal Context-60 layout
def test_context60_keeps_background_as_class_against_numpy(tmp_path):
    root, ann, split, raws = make_voc(tmp_path, context=True)
    unseen = [1, 3, 4, 8, 10, 14, 18, 20, 32, 38]
    ds = build_dataset(dict(type='ZeroPascalContextDataset60', data_root=root, img_dir='JPEGImages',
                            ann_dir=ann, split=split, pipeline=TEST_PIPE, test_mode=True,
                            unseen_classes=unseen))
    assert len(ds.CLASSES) == 60 and ds.CLASSES[0] == 'background' and ds.CLASSES[1] == 'aeroplane'
    # the Context-59 names are the Context-60 names after background, in the same order
    from cascade_clip.datasets import ZeroPascalVOCDataset59
    assert list(ds.CLASSES[1:]) == list(ZeroPascalVOCDataset59.CLASSES)
    assert [ds.CLASSES[i] for i in unseen] == [ZeroPascalVOCDataset59.CLASSES[i] for i in
                                               [0, 2, 3, 7, 9, 13, 17, 19, 31, 37]]
    gts = [r.astype(np.int64) for r in raws]  # no shift: 0 = background is a class, 255 ignored
    assert np.array_equal(ds.get_gt_seg_map_by_idx(0), gts[0])
    preds = [np.where(g == 255, 0, g) for g in gts]
    preds[0][0, 0] = 1   # a background pixel predicted as aeroplane (unseen)
    preds[1][0, 0] = 16  # an unseen-ish mistake on a seen class
    res = ds.evaluate(preds, metric='mIoU')
    inter, union = np.zeros(60), np.zeros(60)
    for p, g in zip(preds, gts):
        v = g != 255
        for c in range(60):
            inter[c] += ((p == c) & (g == c) & v).sum()
            union[c] += (((p == c) | (g == c)) & v).sum()
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    seen = [c for c in range(60) if c not in unseen and present[c]]
    uns = [c for c in unseen if present[c]]
    S, U = iou[seen].mean(), iou[uns].mean()
    assert 0 in seen and 1 in uns  # background is a seen class with an IoU
    assert res['IoU.background'] == pytest.approx(iou[0]) and iou[0] < 1
    assert res['mIoU_seen'] == pytest.approx(S)
    assert res['mIoU_unseen'] == pytest.approx(U)
    assert res['hIoU'] == pytest.approx(2 * S * U / (S + U))
