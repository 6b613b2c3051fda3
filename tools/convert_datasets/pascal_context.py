"""Pascal Context (59 classes + background) label maps and split lists, made by the installed
MMSegmentation's own converter (``<mmseg>/.mim/tools/convert_datasets/pascal_context.py``)
after this project's checks.

    python tools/convert_datasets/pascal_context.py datasets/VOCdevkit \\
        datasets/VOCdevkit/VOC2010/trainval_merged.json

Needs:
  * DEVKIT_PATH/VOC2010/JPEGImages: VOCtrainval_03-May-2010.tar of Pascal VOC 2010;
  * JSON_PATH: ``trainval_merged.json``, the Pascal Context annotations of the PASCAL in Detail
    API (the file MMSegmentation's data preparation guide links);
  * the Detail API (Python package ``detail``), which is NOT on PyPI (``pip install detail`` is
    an unrelated package): ``pip install
    'git+https://github.com/zhanghang1989/detail-api.git#subdirectory=PythonAPI'``.
Checked first: all three. MMSeg's converter then writes
``VOC2010/SegmentationClassContext/<id>.png`` (0 background, 1-59 the classes; read by the
Context-59 and Context-60 configs) and ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt``
(4998 and 5105 ids in the full release). Each output is written whole (temporary name,
renamed when complete).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcv.utils import get_logger, print_log  # noqa: E402

from tools.convert_datasets.common import require, run_mmseg_converter  # noqa: E402

DETAIL_API = 'git+https://github.com/zhanghang1989/detail-api.git#subdirectory=PythonAPI'


def check_detail_api() -> None:
    """SystemExit saying what to install when the Detail API (``from detail import Detail``),
    which MMSeg's converter imports, is missing."""
    try:
        from detail import Detail  # noqa: F401
    except ImportError as e:
        raise SystemExit(
            f"MMSeg's pascal_context.py converter needs the Detail API (`from detail import "
            f"Detail` failed: {e}). It is not on PyPI (`pip install detail` gives an unrelated "
            f"package): install it from its repository, which compiles a C extension:\n"
            f"  pip install '{DETAIL_API}'") from None


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('devkit_path', help='the VOCdevkit folder (with VOC2010/JPEGImages)')
    parser.add_argument('json_path', help='trainval_merged.json of the Detail API')
    parser.add_argument('-o', '--out_dir', help='label map folder '
                        '(default: DEVKIT_PATH/VOC2010/SegmentationClassContext)')
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    require([(osp.join(args.devkit_path, 'VOC2010', 'JPEGImages'),
              'VOCtrainval_03-May-2010.tar of Pascal VOC 2010'),
             (args.json_path, 'trainval_merged.json, the Pascal Context annotations of the '
                              'Detail API')])
    check_detail_api()
    run_mmseg_converter('pascal_context', argv)
    voc = osp.abspath(osp.join(args.devkit_path, 'VOC2010'))
    out = osp.abspath(args.out_dir or osp.join(voc, 'SegmentationClassContext'))
    print_log(f'Pascal Context label maps (0 background, 1-59 classes) written into {out}; '
              f'split lists {voc}/ImageSets/SegmentationContext/{{train,val}}.txt',
              get_logger('cascade_clip.convert'))


if __name__ == '__main__':
    main()
