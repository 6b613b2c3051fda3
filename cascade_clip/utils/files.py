"""Files in and out: declared sizes checked before reading, text read as UTF-8 with named
errors, outputs written whole or not at all."""
import codecs
import contextlib
import errno
import os
import os.path as osp
import shutil
from typing import Callable, Iterator, TypeVar

import mmcv
import numpy as np

T = TypeVar('T')


def check_declared_size(path: str, what: str, declared: int, available: int,
                        at_most: bool = False) -> None:
    """ValueError naming ``path`` when a header declares other data than the file holds (more,
    with ``at_most``); called before reading, so a forged size is never allocated."""
    if declared > available or (declared != available and not at_most):
        raise ValueError(f'{path}: {what} declares {declared} bytes of data, but the file holds '
                         f'{"at most " if at_most else ""}{available}: the file is damaged, '
                         f'truncated or forged')


def read_text(path: str, what: str) -> str:
    """The UTF-8 text of ``path`` (no byte-order mark, ``\\n`` line ends); ``what`` names the
    file in messages, e.g. 'class file'. ValueError (byte offset and line) when not UTF-8."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    with open(path, 'rb') as f:
        data = f.read()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode('utf-8')
    except UnicodeDecodeError as e:
        offset = bom + e.start
        line = data.count(b'\n', 0, offset) + 1
        raise ValueError(
            f'{what} {path} is not UTF-8 text: byte {offset} (line {line}) is 0x{data[offset]:02x} '
            f'({e.reason}). Save it as UTF-8; a file from Windows (Windows-1252) converts with '
            f'`iconv -f WINDOWS-1252 -t UTF-8 {path} > {osp.splitext(path)[0]}.utf8'
            f'{osp.splitext(path)[1]}`') from None
    return text.replace('\r\n', '\n').replace('\r', '\n')


def read_npy(path: str, want: str) -> np.ndarray:
    """The numeric array of the .npy file ``path`` (never unpickled, size checked before reading);
    ``want`` describes the expected array for messages."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found')
    with open(path, 'rb') as f:
        if f.read(4) == b'PK\x03\x04':
            raise ValueError(f'{path} is an .npz archive (a zip of arrays); expected {want} in a '
                             f'.npy file')
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f'.npy format version {version}')
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as e:  # not an .npy file (a text file, an .npz archive, ...)
            raise ValueError(f'{path} is not a plain .npy array ({e}); expected {want}') from None
        if dtype.hasobject or dtype.kind not in 'biuf':
            raise ValueError(f'{path} holds a {dtype} array (objects would be unpickled): '
                             f'expected {want}')
        data_start = f.tell()
    size = osp.getsize(path) - data_start
    check_declared_size(path, f'its header (a {shape} {dtype} array)',
                        int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, size)
    return np.load(path, allow_pickle=False)


def read_named(path: str, reader: Callable[[str], T]) -> T:
    """``reader(path)``; any error becomes a ValueError naming ``path`` (readers' own messages,
    e.g. OpenCV's assertions, often name nothing)."""
    try:
        return reader(path)
    except Exception as e:
        raise ValueError(f'could not read {path} ({type(e).__name__}: {str(e).strip()}): is the '
                         f'file damaged, truncated or empty?') from e


@contextlib.contextmanager
def atomic_output(path: str, replace: bool = True) -> Iterator[str]:
    """Write ``path`` whole or not at all: yields a hidden temporary name in the same folder,
    renamed to ``path`` when the block ends normally, else removed; OSError naming ``path``.

    Args:
        path: the file to write.
        replace: replace an existing ``path`` atomically; False: FileExistsError if it exists.
    """
    path = str(path)
    folder, name = osp.split(osp.abspath(path))
    stem, ext = osp.splitext(name)
    tmp = osp.join(folder, f'.{stem}.tmp-{os.getpid()}{ext}')
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        if replace:
            os.replace(tmp, path)  # a link at ``path`` is replaced, its target left alone
        else:
            _move_to_new_name(tmp, path)
    except (OSError, RuntimeError) as e:
        full = getattr(e, 'errno', None) == errno.ENOSPC or 'No space left' in str(e)
        if not isinstance(e, OSError) and not full:
            raise  # a writer's own error
        reason = 'no space left on the device' if full else (e.strerror or str(e))
        if full:
            reason += f' ({shutil.disk_usage(folder).free / 2**20:.1f} MiB free there)'
        code = errno.ENOSPC if full else e.errno
        message = f'could not write {path}: {reason}'
        # OSError(code, ...) is FileExistsError, PermissionError, ... as the code says
        raise (OSError(code, message) if code is not None else OSError(message)) from e
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


def _move_to_new_name(tmp: str, path: str) -> None:
    """Give the complete file ``tmp`` the name ``path`` unless ``path`` exists (FileExistsError)."""
    try:
        os.link(tmp, path)  # claims the name atomically
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(tmp, path)


def write_image(img: np.ndarray, path: str) -> None:
    """``mmcv.imwrite(img, path)`` whole or not at all (:func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        if not mmcv.imwrite(img, tmp):
            raise OSError(f'the image could not be encoded as {osp.splitext(path)[1]}')


TEMPORARY_NAME = r'^\.(?P<stem>.+)\.tmp-(?P<pid>\d+)(?P<ext>\.[^.]*)?$'  # atomic_output's names
