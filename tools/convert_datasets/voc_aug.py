"""Pascal VOC 2012 + SBD ("aug") label maps and split lists, made by the installed
MMSegmentation's own converter (``<mmseg>/.mim/tools/convert_datasets/voc_aug.py``) after this
project's checks.

    python tools/convert_datasets/voc_aug.py datasets/VOCdevkit datasets/VOCdevkit/VOCaug [--nproc 8]

Needs:
  * DEVKIT_PATH/VOC2012 with ``JPEGImages/``, ``SegmentationClass/`` and
    ``ImageSets/Segmentation/{train,val}.txt``: VOCtrainval_11-May-2012.tar of Pascal VOC 2012;
  * AUG_PATH/dataset with ``cls/*.mat``, ``train.txt`` and ``val.txt``: benchmark.tgz of the
    Semantic Boundaries Dataset (SBD), whose ``benchmark_RELEASE`` folder is AUG_PATH.
Checked first: these exist, the lists give the 10582 training ids of the full release, and
every id of ``aug.txt`` (SBD ids outside VOC's train and val: the configs' training list) has
its ``.mat`` and its image. MMSeg's converter then writes ``SegmentationClassAug/<id>.png``
for every ``.mat`` (its ``GTcls`` segmentation, classes 0-20) and
``ImageSets/Segmentation/{trainaug,aug}.txt``. A ``.mat`` that cannot be read stops it, named;
each output is written whole (temporary name, renamed when complete).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcv.utils import get_logger, print_log  # noqa: E402

from tools.convert_datasets.common import require, run_mmseg_converter  # noqa: E402

AUG_LEN = 10582  # VOC 2012 train + SBD train and val, without VOC 2012 val; MMSeg checks it


def read_ids(path: str) -> List[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def check_release(devkit: str, aug_path: str) -> int:
    """SystemExit naming what is missing or incomplete; the number of ``aug.txt`` ids."""
    voc, sbd = osp.join(devkit, 'VOC2012'), osp.join(aug_path, 'dataset')
    voc_src, sbd_src = 'VOCtrainval_11-May-2012.tar of Pascal VOC 2012', 'benchmark.tgz of SBD'
    require([(osp.join(voc, d), voc_src) for d in ('JPEGImages', 'SegmentationClass',
                                                   'ImageSets/Segmentation/train.txt',
                                                   'ImageSets/Segmentation/val.txt')]
            + [(osp.join(sbd, d), sbd_src) for d in ('cls', 'train.txt', 'val.txt')])
    train, val = (set(read_ids(osp.join(voc, f'ImageSets/Segmentation/{s}.txt')))
                  for s in ('train', 'val'))
    sbd_ids = set(read_ids(osp.join(sbd, 'train.txt'))) | set(read_ids(osp.join(sbd, 'val.txt')))
    # the two lists MMSeg's converter makes, with the sizes it asserts
    trainaug, aug = (train | sbd_ids) - val, sbd_ids - train - val
    if len(trainaug) != AUG_LEN or len(aug) != AUG_LEN - len(train):
        raise SystemExit(
            f'the split lists give {len(trainaug)} training ids ({len(train)} of VOC 2012 '
            f'train.txt, {len(sbd_ids)} of SBD train.txt + val.txt, less the {len(val)} of VOC '
            f'val.txt) and {len(aug)} SBD-only ids; the full releases give {AUG_LEN} and '
            f'{AUG_LEN - len(train)}: is a list of {voc} or {sbd} incomplete or from another '
            f'release?')
    missing = [p for i in sorted(aug) for p in (osp.join(sbd, 'cls', f'{i}.mat'),
                                                osp.join(voc, 'JPEGImages', f'{i}.jpg'))
               if not osp.isfile(p)]
    if missing:
        raise SystemExit(f'{len(missing)} file(s) of the {len(aug)} ids of aug.txt are missing, '
                         f'e.g. ' + ', '.join(missing[:5]))
    return len(aug)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('devkit_path', help='the VOCdevkit folder (with VOC2012/)')
    parser.add_argument('aug_path', help="SBD's benchmark_RELEASE folder (with dataset/cls/)")
    parser.add_argument('-o', '--out_dir', help='label map folder '
                        '(default: DEVKIT_PATH/VOC2012/SegmentationClassAug)')
    parser.add_argument('--nproc', default=1, type=int, help='parallel processes')
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    n_aug = check_release(args.devkit_path, args.aug_path)
    run_mmseg_converter('voc_aug', argv, constants=dict(AUG_LEN=AUG_LEN))
    out = osp.abspath(args.out_dir or osp.join(args.devkit_path, 'VOC2012', 'SegmentationClassAug'))
    lists = osp.abspath(osp.join(args.devkit_path, 'VOC2012', 'ImageSets', 'Segmentation'))
    print_log(f'SBD label maps written into {out}; split lists {lists}/trainaug.txt '
              f'({AUG_LEN} ids) and aug.txt ({n_aug} ids)', get_logger('cascade_clip.convert'))


if __name__ == '__main__':
    main()
