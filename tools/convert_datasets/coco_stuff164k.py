"""COCO-Stuff 164k label maps, made by the installed MMSegmentation's own converter
(``<mmseg>/.mim/tools/convert_datasets/coco_stuff164k.py``) after this project's checks.

    python tools/convert_datasets/coco_stuff164k.py datasets/coco_stuff164k [--nproc 8]

Needs COCO_PATH with (the three zips of the COCO-Stuff site, github.com/nightrome/cocostuff):
  * ``images/{train2017,val2017}/*.jpg``: train2017.zip and val2017.zip of COCO 2017, unzipped
    into ``images/``;
  * ``annotations/{train2017,val2017}/*.png``: stuffthingmaps_trainval2017.zip, unzipped into
    ``annotations/``.
Checked first: these folders exist and hold the full release (118287 + 5000 images and
label maps). MMSeg's converter then writes ``annotations/*2017/<id>_labelTrainIds.png`` beside
each label map (ids 0-170, 255 ignored), which the configs read; with ``-o OUT_DIR`` it copies
the images to OUT_DIR and writes the label maps there. A label map that cannot be read stops
it, named; each output is written whole (temporary name, renamed when complete).
"""
import argparse
import glob
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcv.utils import get_logger, print_log  # noqa: E402

from tools.convert_datasets.common import require, run_mmseg_converter  # noqa: E402

SPLIT_SIZES = {'train2017': 118287, 'val2017': 5000}  # COCO 2017; MMSeg checks their sum


def count_files(folder: str, suffix: str) -> int:
    """Files of ``folder`` ending in ``suffix``, outputs of the converter (_labelTrainIds) aside."""
    return sum('_labelTrainIds' not in f for f in glob.glob(osp.join(folder, f'*{suffix}')))


def check_release(coco_path: str, out_dir: Optional[str]) -> Dict[str, int]:
    """SystemExit naming what is missing or incomplete in ``coco_path``; {split: label maps}."""
    sources = {'images': '{}.zip of COCO 2017, unzipped into images/',
               'annotations': 'stuffthingmaps_trainval2017.zip of COCO-Stuff, unzipped into '
                              'annotations/'}
    require((osp.join(coco_path, kind, split), source.format(split))
            for kind, source in sources.items() for split in SPLIT_SIZES)
    found = {(kind, split): count_files(osp.join(coco_path, kind, split),
                                        '.jpg' if kind == 'images' else '.png')
             for kind in sources for split in SPLIT_SIZES}
    wrong = [f'{osp.join(coco_path, kind, split)} holds {n} (expected {SPLIT_SIZES[split]})'
             for (kind, split), n in found.items() if n != SPLIT_SIZES[split]]
    if wrong:
        raise SystemExit('not the full COCO-Stuff 164k release: ' + '; '.join(wrong)
                         + ': unzip the missing files again')
    # MMSeg copies the images when the two arguments differ as strings
    if out_dir and out_dir != coco_path and osp.exists(osp.join(out_dir, 'images')):
        raise SystemExit(f'{osp.join(out_dir, "images")} exists: MMSeg\'s converter copies the '
                         f'images there and overwrites nothing; choose another -o folder')
    return {split: found['annotations', split] for split in SPLIT_SIZES}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('coco_path', help='the coco_stuff164k folder (images/, annotations/)')
    parser.add_argument('-o', '--out_dir', help='output folder (default: COCO_PATH)')
    parser.add_argument('--nproc', default=16, type=int, help='parallel processes (MMSeg: 16)')
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    counts = check_release(args.coco_path, args.out_dir)
    run_mmseg_converter('coco_stuff164k', argv,
                        constants=dict(COCO_LEN=sum(SPLIT_SIZES.values())))
    out = osp.abspath(args.out_dir or args.coco_path)
    print_log(f'{counts["train2017"]} + {counts["val2017"]} label maps (ids 0-170, 255 ignored) '
              f'written as {out}/annotations/{{train2017,val2017}}/*_labelTrainIds.png',
              get_logger('cascade_clip.convert'))


if __name__ == '__main__':
    main()
