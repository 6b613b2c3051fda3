"""Image files in and out: the images a file, folder or glob names; label maps written lossless;
outputs that never replace an input."""
import errno
import glob
import os
import os.path as osp
from pathlib import PurePath
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .files import atomic_output

# what a folder or a glob yields (lower case; the files' own case does not matter)
IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')


def is_image_name(path: str) -> bool:
    """Whether ``path`` ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return osp.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith('.')


def find_images(source: str) -> Tuple[str, List[str]]:
    """The images that ``source`` (a file, a folder searched at any depth, or a glob pattern)
    names, as (root folder, sorted names relative to it); hidden files are left out."""
    source = str(source)
    if osp.isfile(source):
        return osp.dirname(source) or '.', [osp.basename(source)]
    if osp.isdir(source):
        root, names = source, []
        for folder, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            rel = osp.relpath(folder, source)
            names += [osp.normpath(osp.join(rel, f)) for f in files
                      if not _hidden(f) and is_image_name(f)]
        what = f'folder {source} (nor in its sub-folders)'
    elif glob.escape(source) != source:  # wildcards: a glob pattern
        parts = PurePath(source).parts
        literal = next((i for i, p in enumerate(parts) if glob.escape(p) != p), len(parts))
        root = str(PurePath(*parts[:literal])) if literal else '.'
        names = [osp.relpath(m, root) for m in glob.glob(source, recursive=True)
                 if osp.isfile(m) and is_image_name(m)]
        what = f'files matching {source!r}'
    else:
        raise FileNotFoundError(f'{source}: no such file or folder (expected an image file, a '
                                f'folder of images or a glob pattern such as "photos/*.jpg")')
    if not names:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in the {what}')
    return root, sorted(names)


def _identities(path: str) -> set:
    """The names under which writing ``path`` would change a file (itself, a link's target)."""
    path = osp.abspath(path)
    return {osp.join(osp.realpath(osp.dirname(path)), osp.basename(path)), osp.realpath(path)}


def check_outputs_spare_inputs(inputs: Sequence[str], outputs: Sequence[Tuple[str, str]]) -> None:
    """ValueError, before anything is written, when an output would replace one of the
    ``inputs`` or another output (paths compared resolved).

    Args:
        inputs: the input files.
        outputs: (path, what it is, e.g. 'overlay of photos/a.jpg') of every output file.
    """
    taken: Dict[str, str] = {}
    for path in inputs:
        for key in _identities(path):
            taken[key] = f'the input image {path}'
    for path, what in outputs:
        keys = _identities(path)
        clash = next((taken[k] for k in keys if k in taken), None)
        if clash is not None:
            raise ValueError(f'the {what} would be written to {path}, over {clash}: refused, '
                             f'nothing was written; choose another output name or folder')
        for key in keys:
            taken[key] = f'the {what}'


def check_label_map_name(path: str, option: str) -> None:
    """ValueError naming ``option`` and ``path`` unless it ends in .png (lossless: ids kept)."""
    ext = osp.splitext(str(path))[1]
    if ext.lower() != '.png':
        raise ValueError(f'{option} {path}: label maps are written only as PNG (lossless; a '
                         f'{ext or "name without extension"} would not keep the class ids); '
                         f'expected a name ending in .png')


def check_image_name(path: str, option: str) -> None:
    """ValueError naming ``option`` and ``path`` when OpenCV has no writer for its extension."""
    if not cv2.haveImageWriter(str(path)):
        raise ValueError(f'{option} {path}: not an image name OpenCV can write; expected an '
                         f'extension such as .png or .jpg')


def write_image(path: str, img: np.ndarray) -> None:
    """Write ``img`` (H, W[, C]) to ``path`` whole or not at all (format from the extension)."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(tmp, img):
            raise OSError(errno.EIO, f'OpenCV could not write a {img.dtype} {img.shape} image '
                                     f'there (is the folder writable?)')


def write_label_map(path: str, labels: np.ndarray, num_classes: int) -> None:
    """Write the (H, W) class indices ``labels`` to ``path``: 8-bit up to 256 classes, else 16."""
    write_image(path, labels.astype(np.uint8 if num_classes <= 256 else np.uint16))
