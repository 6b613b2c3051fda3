"""ADE20K-847 from the raw ``ADE20K_2021_17_01`` release, in the layout of the detectron2-based
open-vocabulary projects (so data prepared by either works with the other).

    python tools/convert_datasets/ade20k_847.py datasets/ADE20K_2021_17_01 [--nproc 8]

Needs RAW_DIR = the unpacked ``ADE20K_2021_17_01`` folder of the full ADE20K release (a zip
from the ADE20K site after registering, groups.csail.mit.edu/vision/datasets/ADE20K), with:
  * ``index_ade20k.pkl``: the image list (``folder``, ``filename``) and ``objectnames``;
  * ``images/ADE/validation/<scene>/.../ADE_val_*.jpg`` with ``ADE_val_*_seg.png`` beside.
Writes, inside RAW_DIR, the validation split:
  * ``images_detectron2/validation/ADE_val_*.jpg`` (shorter side capped at 512, bilinear);
  * ``annotations_detectron2/validation/ADE_val_*.tif``: uint16 train ids 0-846 of the 847
    classes (the full-ADE class of a pixel is ``R // 10 * 256 + G`` of its ``_seg.png``),
    65535 for every other class and unlabelled pixels (nearest-neighbour when resized).
Finished images are skipped on a re-run (each file is written to a temporary name, then
renamed). An image or ``_seg.png`` that cannot be read (empty, truncated) gets no output and is
named at the end, after the others are converted (exit status 1). The pickle is read with a
restricted unpickler: plain containers, strings, numbers and numpy arrays only, never code.
"""
import argparse
import io
import os.path as osp
import pickle
import shutil
import sys
from typing import List, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import cv2  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402
from PIL import Image  # noqa: E402

from cascade_clip.datasets.names import ADE847  # noqa: E402
from cascade_clip.utils.files import atomic_output, read_named  # noqa: E402
from tools.convert_datasets.common import convert_all, report  # noqa: E402

IGNORE = 65535
MAX_SHORT_SIDE = 512
SPLIT = 'validation'
# numpy's array reconstruction (both module names: numpy 1.x and 2.x pickles)
ALLOWED_GLOBALS = {
    (mod, name) for mod in ('numpy.core.multiarray', 'numpy._core.multiarray')
    for name in ('_reconstruct', 'scalar')} | {('numpy', 'ndarray'), ('numpy', 'dtype'),
                                               ('collections', 'OrderedDict')}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refused to load {module}.{name}: only plain containers and '
                                     f'numpy arrays are read from a downloaded pickle')


def read_index(path: str) -> dict:
    with open(path, 'rb') as f:
        try:
            index = RestrictedUnpickler(io.BytesIO(f.read())).load()
        except pickle.UnpicklingError as e:
            raise SystemExit(f'{path}: {e}')
    missing = [k for k in ('folder', 'filename') if not isinstance(index, dict) or k not in index]
    if missing:
        raise SystemExit(f'{path} has no {missing} list: is it the index_ade20k.pkl of '
                         f'ADE20K_2021_17_01?')
    return index


def train_id_lut() -> np.ndarray:
    """(2**16,) uint16: full-ADE class index -> train id (65535 for the other classes)."""
    lut = np.full(1 << 16, IGNORE, np.uint16)
    for train_id, (_, full_id) in enumerate(ADE847):
        lut[full_id] = train_id
    return lut


def check_object_names(index: dict, logger) -> None:
    """Warn when the release's names at the 847 ids are not the expected ones (another release)."""
    names = index.get('objectnames')
    if names is None:
        return
    names = list(names)
    bad = [(full_id, name, names[full_id - 1] if full_id <= len(names) else None)
           for name, full_id in ADE847
           if full_id > len(names) or str(names[full_id - 1]).split(',')[0].strip().lower()
           != name.split(',')[0].strip().lower()]
    if bad:
        print_log(f'{len(bad)} of the 847 class ids name other objects in this index, e.g. '
                  f'{bad[:3]} (id, expected, found): is this the ADE20K_2021_17_01 release?',
                  logger, level=30)


def source_images(raw_dir: str, index: dict) -> List[str]:
    """Absolute paths of the validation images listed in the index."""
    out = []
    for folder, name in zip(index['folder'], index['filename']):
        if name.split('_')[1] != 'val':
            continue
        parts = str(folder).replace('\\', '/').split('/')
        # folders are given from the release's parent ("ADE20K_2021_17_01/images/ADE/...")
        rel = parts[1:] if parts and parts[0] == 'ADE20K_2021_17_01' else parts
        out.append(osp.join(raw_dir, *rel, name))
    return out


def output_paths(raw_dir: str, img: str) -> Tuple[str, str]:
    name = osp.basename(img)
    return (osp.join(raw_dir, 'images_detectron2', SPLIT, name),
            osp.join(raw_dir, 'annotations_detectron2', SPLIT, osp.splitext(name)[0] + '.tif'))


def decode_seg(seg_png: str) -> np.ndarray:
    """(H, W) int64 full-ADE class index of each pixel: R // 10 * 256 + G."""
    with Image.open(seg_png) as im:
        rgb = np.asarray(im.convert('RGB'))
    return (rgb[..., 0].astype(np.int64) // 10) * 256 + rgb[..., 1].astype(np.int64)


def capped_size(h: int, w: int) -> Tuple[int, int]:
    """(h, w) with the shorter side at most MAX_SHORT_SIDE, aspect ratio kept."""
    short = min(h, w)
    if short <= MAX_SHORT_SIDE:
        return h, w
    s = MAX_SHORT_SIDE / short
    return ((MAX_SHORT_SIDE, round(w * s)) if h <= w else (round(h * s), MAX_SHORT_SIDE))


def read_color(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of ``path``; ValueError when it does not decode."""
    image = mmcv.imread(path, flag='color')
    if image is None:
        raise ValueError('not a decodable image')
    return image


def convert_one(task: Tuple[str, str]) -> str:
    """Writes one validation image and its label map; 'converted' or 'skipped' (both exist)."""
    raw_dir, img = task
    out_img, out_lab = output_paths(raw_dir, img)
    if osp.isfile(out_img) and osp.isfile(out_lab):
        return 'skipped'
    label = train_id_lut()[read_named(img[:-len('.jpg')] + '_seg.png', decode_seg)]
    image = read_named(img, read_color)
    if image.shape[:2] != label.shape:
        raise ValueError(f'{img}: image {image.shape[:2]} and its _seg.png {label.shape} differ')
    h, w = capped_size(*label.shape)
    if (h, w) != label.shape:
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    with atomic_output(out_lab) as tmp:
        Image.fromarray(label.astype(np.uint16)).save(tmp)
    with atomic_output(out_img) as tmp:
        if (h, w) == image.shape[:2]:
            shutil.copyfile(img, tmp)
        elif not mmcv.imwrite(mmcv.imresize(image, (w, h), interpolation='bilinear'), tmp):
            raise OSError(f'OpenCV could not encode {tmp}')
    return 'converted'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('raw_dir', help='the unpacked ADE20K_2021_17_01 folder')
    parser.add_argument('--nproc', type=int, default=1, help='parallel processes')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip.convert')
    raw = osp.abspath(args.raw_dir)
    index_file = osp.join(raw, 'index_ade20k.pkl')
    if not osp.isfile(index_file):
        raise SystemExit(f'missing {index_file}: RAW_DIR must be the unpacked ADE20K_2021_17_01 '
                         f'folder of the full ADE20K release (see --help)')
    index = read_index(index_file)
    check_object_names(index, logger)
    images = source_images(raw, index)
    if not images:
        raise SystemExit(f'{index_file} lists no validation image (ADE_val_*.jpg)')
    missing = [p for img in images for p in (img, img[:-len('.jpg')] + '_seg.png')
               if not osp.isfile(p)]
    if missing:
        raise SystemExit(f'{len(missing)} file(s) listed in {index_file} are missing, e.g. '
                         + ', '.join(missing[:5]))
    for d in ('images_detectron2', 'annotations_detectron2'):
        mmcv.mkdir_or_exist(osp.join(raw, d, SPLIT))
    results = convert_all(convert_one, [(raw, img) for img in images], args.nproc)
    report(results, 'image(s)', f'{raw}/{{images,annotations}}_detectron2/{SPLIT}', logger)


if __name__ == '__main__':
    main()
