"""Pascal Context-459 (the full Pascal Context vocabulary) label maps for the validation images,
in the layout of the detectron2-based open-vocabulary projects.

    python tools/convert_datasets/pascal_context_459.py datasets/VOCdevkit/VOC2010 [--nproc 8]
        [--split ImageSets/SegmentationContext/val.txt]

Needs, inside the VOC2010 folder:
  * ``JPEGImages/*.jpg``: VOCtrainval_03-May-2010.tar of Pascal VOC 2010;
  * ``trainval/*.mat`` (each with a ``LabelMap``): ``trainval.tar.gz`` of the Pascal Context
    site (cs.stanford.edu/~roozbeh/pascal-context), unpacked into VOC2010;
  * the validation list (5105 ids): ``ImageSets/SegmentationContext/val.txt`` as MMSeg's
    ``pascal_context.py`` converter writes it for Context-59, or ``--split`` another list with
    the same ids (one per line).
Writes ``annotations_detectron2/pc459_val/<id>.tif``: uint16, full-vocabulary label k (1-459)
-> class id k - 1, label 0 (unlabelled) -> 65535 (ignored). Finished files are skipped on a
re-run (written to a temporary name, then renamed). A ``.mat`` that cannot be read (empty,
truncated) gets no output and is named at the end, after the others are converted (exit
status 1).
"""
import argparse
import os.path as osp
import sys
from typing import Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
from mmcv.utils import get_logger  # noqa: E402
from PIL import Image  # noqa: E402

from cascade_clip.utils.files import atomic_output, read_named  # noqa: E402
from tools.convert_datasets.common import convert_all, report, require  # noqa: E402

IGNORE = 65535
NUM_CLASSES = 459
OUT_DIR = 'annotations_detectron2/pc459_val'


def to_class_ids(label_map: np.ndarray, name: str) -> np.ndarray:
    """Full Pascal Context labels (0 unlabelled, 1-459) -> uint16 ids 0-458, 65535 ignored."""
    lab = np.asarray(label_map).astype(np.int64)
    bad = np.unique(lab[(lab < 0) | (lab > NUM_CLASSES)])
    if bad.size:
        raise ValueError(f'{name}: LabelMap holds {bad.tolist()[:5]}, not labels 0-{NUM_CLASSES}')
    return np.where(lab == 0, IGNORE, lab - 1).astype(np.uint16)


def image_size(path: str) -> Tuple[int, int]:
    """(W, H) from the image's header."""
    with Image.open(path) as im:
        return im.size


def convert_one(task: Tuple[str, str]) -> str:
    """Writes the label map of one image id; 'converted' or 'skipped' (it exists)."""
    root, file_id = task
    out = osp.join(root, OUT_DIR, f'{file_id}.tif')
    if osp.isfile(out):
        return 'skipped'
    mat = osp.join(root, 'trainval', f'{file_id}.mat')
    data = read_named(mat, scipy.io.loadmat)
    if 'LabelMap' not in data:
        raise ValueError(f'{mat} has no LabelMap (keys: {sorted(k for k in data if not k.startswith("__"))})')
    label = to_class_ids(data['LabelMap'], mat)
    w, h = read_named(osp.join(root, 'JPEGImages', f'{file_id}.jpg'), image_size)
    if label.shape != (h, w):
        raise ValueError(f'{mat}: LabelMap is {label.shape} but {file_id}.jpg is {(h, w)} (H, W)')
    with atomic_output(out) as tmp:
        Image.fromarray(label).save(tmp)
    return 'converted'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('voc2010', help='the VOCdevkit/VOC2010 folder')
    parser.add_argument('--split', default='ImageSets/SegmentationContext/val.txt',
                        help='validation id list (relative to VOC2010 or absolute)')
    parser.add_argument('--nproc', type=int, default=1, help='parallel processes')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip.convert')
    root = osp.abspath(args.voc2010)
    split = args.split if osp.isabs(args.split) else osp.join(root, args.split)
    need = [(osp.join(root, 'JPEGImages'), 'VOCtrainval_03-May-2010.tar of Pascal VOC 2010'),
            (osp.join(root, 'trainval'), "trainval.tar.gz of Pascal Context, unpacked into VOC2010"),
            (split, "the validation list (MMSeg's pascal_context.py writes it; or --split FILE)")]
    require(need)
    ids = [line.strip() for line in open(split) if line.strip()]
    if not ids:
        raise SystemExit(f'{split} lists no image')
    missing = [p for i in ids for p in (osp.join(root, 'JPEGImages', f'{i}.jpg'),
                                        osp.join(root, 'trainval', f'{i}.mat')) if not osp.isfile(p)]
    if missing:
        raise SystemExit(f'{len(missing)} file(s) of the {len(ids)} images in {split} are missing, '
                         f'e.g. ' + ', '.join(missing[:5]))
    mmcv.mkdir_or_exist(osp.join(root, OUT_DIR))
    results = convert_all(convert_one, [(root, i) for i in ids], args.nproc)
    report(results, 'label map(s)', osp.join(root, OUT_DIR), logger)


if __name__ == '__main__':
    main()
