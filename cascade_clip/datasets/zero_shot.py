"""Generic zero-shot segmentation dataset with seen / unseen / hIoU evaluation."""
import io
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import mmcv
import numpy as np
from mmcv.utils import print_log
from mmseg.core.evaluation.metrics import intersect_and_union, pre_eval_to_metrics
from mmseg.datasets.builder import DATASETS, PIPELINES
from mmseg.datasets.custom import CustomDataset
from mmseg.utils import get_root_logger
from prettytable import PrettyTable

from ..utils.files import read_text, write_image
from ..utils.labels import check_label_values
from ..utils.paths import escapes, join_inside
from ..utils.strict import strict_kwargs


def harmonic_iou(seen: float, unseen: float) -> float:
    """hIoU = 2·S·U / (S + U) (0 when both are 0, NaN when either is NaN)."""
    if np.isnan(seen) or np.isnan(unseen):
        return float('nan')
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


@PIPELINES.register_module()
@strict_kwargs
class CheckSegMap:
    """Refuse a label map of another size than its image or with values that are not class ids
    or the ignore index (right after LoadAnnotations)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, results: dict) -> dict:
        gt = results.get('gt_semantic_seg')
        if gt is None:
            return results
        seg_file = osp.join(results.get('seg_prefix') or '', results['ann_info']['seg_map'])
        check_single_channel(gt, seg_file)
        if 'img' in results and results['img'].shape[:2] != gt.shape[:2]:
            raise ValueError(f'label map {seg_file} has size {gt.shape[:2]} (H, W) but its image '
                             f'{results.get("filename")} has {results["img"].shape[:2]}')
        check_label_values(gt, self.num_classes, self.ignore_index, seg_file)
        return results


def check_single_channel(gt: np.ndarray, name: str) -> None:
    """Label maps hold one class id per pixel: refuse colour (H, W, 3) maps by name."""
    if gt.ndim != 2:
        raise ValueError(f'label map {name} has shape {gt.shape}: expected a single-channel '
                         f'(H, W) map of class ids; colour-coded (RGB) label maps must be converted '
                         f'to ids first (MMSeg\'s tools/convert_datasets scripts do this)')


def check_split_entries(split: str, img_infos: List[dict], img_suffix: str, img_dir: str,
                        ann_dir: Optional[str]) -> None:
    """Refuse a split entry naming a file outside ``img_dir`` / ``ann_dir`` (absolute or ``..``);
    ``img_infos`` are MMSeg's, one per line of the split file."""
    for line, info in enumerate(img_infos, 1):
        entry = info['filename'][:len(info['filename']) - len(img_suffix)]
        if (escapes(info['filename'], img_dir)
                or (ann_dir is not None and escapes(info['ann']['seg_map'], ann_dir))):
            where = img_dir if ann_dir is None else f'{img_dir} / {ann_dir}'
            raise ValueError(f'split file {split}, line {line}: entry {entry!r} resolves outside '
                             f'the dataset folders {where} (absolute or with ".."); split entries '
                             f'are image names relative to img_dir, without suffix')


def check_listed_files(img_infos: List[dict], img_dir: str, ann_dir: Optional[str],
                       split: Optional[str] = None, first: int = 5) -> None:
    """Refuse (FileNotFoundError listing the first ``first``) listed images or label maps that
    do not exist."""
    missing_img = [osp.join(img_dir, i['filename']) for i in img_infos
                   if not osp.isfile(osp.join(img_dir, i['filename']))]
    missing_ann = [] if ann_dir is None else [
        osp.join(ann_dir, i['ann']['seg_map']) for i in img_infos
        if osp.isfile(osp.join(img_dir, i['filename']))
        and not osp.isfile(osp.join(ann_dir, i['ann']['seg_map']))]
    if not (missing_img or missing_ann):
        return
    where = f' listed in the split {split}' if split else ''
    parts = []
    for what, paths in (('images', missing_img), ('label maps', missing_ann)):
        if paths:
            more = f', ... ({len(paths) - first} more)' if len(paths) > first else ''
            parts.append(f'{len(paths)} of the {len(img_infos)} {what}{where} do not exist: '
                         f'{", ".join(paths[:first])}{more}')
    if missing_ann and not missing_img and len(missing_ann) == 1:
        img = [osp.join(img_dir, i['filename']) for i in img_infos
               if osp.join(ann_dir, i['ann']['seg_map']) == missing_ann[0]][0]
        parts = [f'image {img} has no label map: {missing_ann[0]} does not exist']
    raise FileNotFoundError('; '.join(parts))


@DATASETS.register_module()
@strict_kwargs
class ZeroShotDataset(CustomDataset):
    """Any folder of images + label maps, with class names and the unseen classes in the config.

    Args (besides CustomDataset's):
        unseen_classes: ids of the unseen classes; empty for a plain (cross-dataset) evaluation.
        check_labels: insert :class:`CheckSegMap` after ``LoadAnnotations``.
    """

    # defaults of the subclasses' layouts (a config can still override each)
    IMG_SUFFIX = '.jpg'
    SEG_MAP_SUFFIX = '.png'
    REDUCE_ZERO_LABEL = False

    def __init__(self, pipeline: List[dict], img_dir: str, unseen_classes: Sequence[int] = (),
                 check_labels: bool = True, **kwargs):
        kwargs.setdefault('img_suffix', self.IMG_SUFFIX)
        kwargs.setdefault('seg_map_suffix', self.SEG_MAP_SUFFIX)
        kwargs.setdefault('reduce_zero_label', self.REDUCE_ZERO_LABEL)
        data_root = kwargs.get('data_root')
        if data_root is not None and not osp.isdir(data_root):
            raise FileNotFoundError(f'data root not found: {data_root} (see docs/dataset_prepare.md)')
        split = kwargs.get('split')
        if split is not None:
            split_path = split if data_root is None or osp.isabs(split) else osp.join(data_root, split)
            if not osp.isfile(split_path):
                raise FileNotFoundError(f'split file not found: {split_path}')
        pipeline = list(pipeline)
        for i, t in enumerate(pipeline):
            if t.get('type') == 'LoadAnnotations':
                # the dataset knows whether its label maps count background as 0
                pipeline[i] = dict(t, reduce_zero_label=kwargs.get('reduce_zero_label', False))
                if check_labels:
                    n = len(kwargs.get('classes') or self.CLASSES or ())
                    pipeline.insert(i + 1, dict(type='CheckSegMap', num_classes=n,
                                                ignore_index=kwargs.get('ignore_index', 255)))
                break
        # evaluation ground truth is read like the training labels (background reduced away)
        kwargs.setdefault('gt_seg_map_loader_cfg',
                          dict(reduce_zero_label=kwargs.get('reduce_zero_label', False)))
        super().__init__(pipeline, img_dir, **kwargs)
        if not osp.isdir(self.img_dir):
            raise FileNotFoundError(f'image folder not found: {self.img_dir}')
        check_listed_files(self.img_infos, self.img_dir, self.ann_dir, self.split)
        n = len(self.CLASSES)
        unseen = sorted(int(i) for i in unseen_classes)
        outside = [i for i in unseen if not 0 <= i < n]
        if outside:
            raise ValueError(f'unseen_classes {outside} are outside the {n} classes')
        self.unseen_classes = unseen
        self.seen_classes = [i for i in range(n) if i not in set(unseen)]

    def prepare_train_img(self, idx):
        return self._named_errors(super().prepare_train_img, idx)

    def prepare_test_img(self, idx):
        return self._named_errors(super().prepare_test_img, idx)

    def _named_errors(self, prepare, idx):
        """``prepare(idx)``; a pipeline error is raised again naming the image and label map."""
        try:
            return prepare(idx)
        except Exception as e:  # noqa: B902 - re-raised with the file names, same type
            info = self.img_infos[idx]
            img = osp.join(self.img_dir, info['filename'])
            if osp.isfile(img) and mmcv.imread(img) is None:  # OpenCV cannot decode it
                raise ValueError(f'cannot read image {img} (sample {idx}): the file is truncated, '
                                 f'corrupt or not an image') from e
            if str(img) in str(e):
                raise
            files = f'image {img}'
            if self.ann_dir is not None and 'ann' in info:
                files += f', label map {osp.join(self.ann_dir, info["ann"]["seg_map"])}'
            try:
                named = type(e)(f'{e} (sample {idx}: {files})')
            except Exception:  # noqa: B902 - an exception type with other arguments
                raise e
            raise named from e

    def load_annotations(self, img_dir, img_suffix, ann_dir, seg_map_suffix, split):
        """MMSeg's image list; a split file is read as UTF-8 (MMSeg would keep a byte-order mark
        in the first name) and each name checked to stay inside the dataset folders."""
        if split is None:
            img_infos = super().load_annotations(img_dir, img_suffix, ann_dir, seg_map_suffix, split)
        else:
            names = [line.strip() for line in io.StringIO(read_text(split, 'split file'))]
            img_infos = [dict(filename=name + img_suffix, **(
                {} if ann_dir is None else dict(ann=dict(seg_map=name + seg_map_suffix))))
                for name in names]
            print_log(f'Loaded {len(img_infos)} images', logger=get_root_logger())
            check_split_entries(split, img_infos, img_suffix, img_dir, ann_dir)
        if not img_infos:
            raise FileNotFoundError(f'no images ending in {img_suffix!r} found in {img_dir}'
                                    + (f' (split {split})' if split else ''))
        return img_infos

    def format_results(self, results, imgfile_prefix, indices=None, **kwargs) -> List[str]:
        """Write predictions as ``imgfile_prefix/<image path in img_dir>.png`` label maps in the
        dataset's own ids (``--format-only``); the written paths."""
        if indices is None:
            indices = list(range(len(self)))
        mmcv.mkdir_or_exist(imgfile_prefix)
        files = []
        for pred, idx in zip(results, indices):
            pred = np.load(pred) if isinstance(pred, str) else np.asarray(pred)
            out = pred.astype(np.int64) + (1 if self.reduce_zero_label else 0)
            # the image's path relative to img_dir: a/x.jpg and b/x.jpg give two files
            name = osp.splitext(self.img_infos[idx]['filename'])[0]
            path = join_inside(imgfile_prefix, f'{name}.png', 'result file')
            write_image(out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16), path)
            files.append(path)
        return files

    def pre_eval(self, preds, indices):
        if not isinstance(indices, list):
            indices = [indices]
        if not isinstance(preds, list):
            preds = [preds]
        out = []
        for pred, index in zip(preds, indices):
            gt = self.get_gt_seg_map_by_idx(index)
            name = self.img_infos[index]['ann']['seg_map']
            check_single_channel(gt, name)
            if pred.shape != gt.shape:
                raise ValueError(f'prediction of size {pred.shape} for label map {name} of size '
                                 f'{gt.shape}')
            check_label_values(gt, len(self.CLASSES), self.ignore_index, name)
            out.append(intersect_and_union(pred, gt, len(self.CLASSES), self.ignore_index,
                                           label_map=dict(), reduce_zero_label=False))
        return out

    def evaluate(self, results, metric='mIoU', logger=None, gt_seg_maps=None, **kwargs) -> Dict:
        """aAcc, mIoU(_seen, _unseen), hIoU and IoU.<name> (fractions) of results or pre_eval."""
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if not set(metrics) <= {'mIoU', 'mDice', 'mFscore'}:
            raise KeyError(f'metric {metrics} is not supported (mIoU, mDice, mFscore)')
        if mmcv.is_list_of(results, np.ndarray) or mmcv.is_list_of(results, str):
            results = [r for i, res in enumerate(results) for r in self.pre_eval(
                res if isinstance(res, np.ndarray) else np.load(res), i)]
        ret = pre_eval_to_metrics(results, metrics)
        names = list(self.CLASSES)
        per_class = {k: np.asarray(v, dtype=np.float64) for k, v in ret.items() if k != 'aAcc'}
        eval_results = OrderedDict(aAcc=float(ret['aAcc']))
        groups = [('all', list(range(len(names))))]
        if self.unseen_classes:
            groups += [('seen', self.seen_classes), ('unseen', self.unseen_classes)]
        summary = PrettyTable(['split'] + list(per_class))
        for gname, idx in groups:
            row = [gname]
            for key, vals in per_class.items():
                m = float(np.nanmean(vals[idx])) if len(idx) else float('nan')
                suffix = '' if gname == 'all' else f'_{gname}'
                eval_results[f'm{key}{suffix}'] = m
                row.append(f'{100 * m:.2f}')
            summary.add_row(row)
        if self.unseen_classes and 'IoU' in per_class:
            eval_results['hIoU'] = harmonic_iou(eval_results['mIoU_seen'], eval_results['mIoU_unseen'])
            summary.add_row(['hIoU', f'{100 * eval_results["hIoU"]:.2f}'] + [''] * (len(per_class) - 1))
        for gname, idx in groups[1:] if self.unseen_classes else groups:
            table = PrettyTable(['class'] + list(per_class))
            for i in idx:
                table.add_row([names[i]] + [f'{100 * per_class[k][i]:.2f}' for k in per_class])
            print_log(f'per-class results ({gname} classes):\n' + table.get_string(), logger)
        print_log(f'summary (aAcc {100 * eval_results["aAcc"]:.2f}):\n' + summary.get_string(), logger)
        for key, vals in per_class.items():
            for i, name in enumerate(names):
                eval_results[f'{key}.{name}'] = float(vals[i])
        return eval_results
