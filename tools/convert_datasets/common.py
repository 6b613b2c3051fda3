"""Shared by the dataset preparation commands of this folder (not a command itself): input
checks, a conversion loop that names every broken file, and the runner of MMSegmentation's
own converters (installed with the ``mmseg`` package, under ``.mim/tools/convert_datasets``).
"""
import builtins
import contextlib
import functools
import importlib.util
import os.path as osp
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import scipy.io
from mmcv.utils import print_log
from PIL import Image

from cascade_clip.utils.files import atomic_output, read_named


def require(paths: Iterable[Tuple[str, str]]) -> None:
    """SystemExit naming every missing path of ``(path, where it comes from)``, before any work."""
    missing = {}
    for path, source in paths:
        if not osp.exists(path):
            missing.setdefault(source, []).append(path)
    if missing:
        raise SystemExit('missing: ' + '; '.join(f'{", ".join(p)} ({source})'
                                                 for source, p in missing.items()))


def _result_or_error(convert: Callable[[tuple], str], task: tuple) -> str:
    try:
        return convert(task)
    except (ValueError, OSError) as e:  # a broken input (named) or a failed write (named)
        return f'failed: {e}'


def convert_all(convert: Callable[[tuple], str], tasks: Sequence[tuple], nproc: int) -> List[str]:
    """``convert(task)`` for every task with a progress bar, in ``nproc`` processes. Returns each
    task's 'converted' or 'skipped', or 'failed: <error naming the file>': a broken file stops
    its own output only, so one run names them all (and no worker is stopped mid-write)."""
    fn = functools.partial(_result_or_error, convert)
    if nproc > 1:
        return mmcv.track_parallel_progress(fn, list(tasks), nproc)
    return mmcv.track_progress(fn, list(tasks))


def report(results: List[str], what: str, where: str, logger) -> None:
    """Log how many ``what`` were converted into ``where``; SystemExit naming each failed file."""
    print_log(f'{results.count("converted")} {what} converted, {results.count("skipped")} '
              f'already done, into {where}', logger)
    failed = [r[len('failed: '):] for r in results if r.startswith('failed: ')]
    if failed:
        more = f'\n  ... and {len(failed) - 10} more' if len(failed) > 10 else ''
        raise SystemExit(f'{len(failed)} of the {len(results)} {what} failed and have no output '
                         f'(the others are written; replace these files and run again, finished '
                         f'ones are skipped):\n  ' + '\n  '.join(failed[:10]) + more)


# ------------------------------------------------------------ MMSegmentation's own converters
def mmseg_converter_path(name: str) -> str:
    """``<mmseg package>/.mim/tools/convert_datasets/<name>.py`` of the installed MMSegmentation."""
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'convert_datasets', f'{name}.py')
    if not osp.isfile(path):
        raise SystemExit(f'MMSegmentation {getattr(mmseg, "__version__", "?")} installed at '
                         f'{osp.dirname(mmseg.__file__)} has no converter {path}: its converters '
                         f'come with the PyPI package (pip install mmsegmentation==0.30.0, as in '
                         f'requirements/runtime.txt)')
    return path


def _read_image(path: str) -> Image.Image:
    image = Image.open(path)
    image.load()  # decode now, so that a truncated file fails here, where it is named
    return image


class _WholeImage:
    """A PIL image whose ``save`` writes the file whole or not at all."""

    def __init__(self, image: Image.Image):
        self.image = image

    def save(self, path: str, *args, **kwargs) -> None:
        with atomic_output(path) as tmp:
            self.image.save(tmp, *args, **kwargs)


class _Images:
    """Stands in for ``PIL.Image`` inside an MMSeg converter: a read that fails names the file,
    a save writes the file whole (temporary name, renamed when complete)."""

    @staticmethod
    def open(path: str) -> Image.Image:
        return read_named(path, _read_image)

    @staticmethod
    def fromarray(array: np.ndarray, *args) -> _WholeImage:
        return _WholeImage(Image.fromarray(array, *args))


def _loadmat(path: str, **kwargs) -> dict:
    return read_named(path, functools.partial(scipy.io.loadmat, **kwargs))


@contextlib.contextmanager
def _open(path: str, mode: str = 'r', *args, **kwargs):
    """``open`` inside an MMSeg converter (always used there as ``with open(...) as f``): a file
    opened for writing is written whole (temporary name, renamed when the block ends)."""
    if 'w' not in mode:
        with builtins.open(path, mode, *args, **kwargs) as f:
            yield f
        return
    with atomic_output(path) as tmp, builtins.open(tmp, mode, *args, **kwargs) as f:
        yield f


def run_mmseg_converter(name: str, argv: List[str], constants: Optional[dict] = None) -> None:
    """Run MMSeg's converter ``name`` as its command line would with the arguments ``argv``.

    Its reads of label files name the file that fails and its outputs (label maps, split
    lists) are written whole: its ``Image``, ``loadmat`` and ``open`` are replaced by the ones
    above. ``constants`` replace module constants it checks (e.g. the expected image count,
    checked here before with a message). Errors naming a file end in SystemExit."""
    path = mmseg_converter_path(name)
    spec = importlib.util.spec_from_file_location(f'mmseg_convert_{name}', path)
    module = importlib.util.module_from_spec(spec)
    # its per-file function is pickled by module name for the worker processes of --nproc
    sys.modules[spec.name] = module
    argv0 = sys.argv
    try:
        spec.loader.exec_module(module)
        module.open = _open
        for attr, value in (('Image', _Images), ('loadmat', _loadmat)):
            if hasattr(module, attr):
                setattr(module, attr, value)
        for attr, value in (constants or {}).items():
            if not hasattr(module, attr):
                raise SystemExit(f'{path} has no {attr} to set: is it MMSegmentation 0.30.0?')
            setattr(module, attr, value)
        sys.argv = [path, *argv]
        module.main()
    except (ValueError, OSError) as e:
        raise SystemExit(f'{name}.py of MMSegmentation stopped: {e}') from e
    finally:
        sys.argv = argv0
        sys.modules.pop(spec.name, None)
