"""The weights of a TorchScript archive (``torch.jit.save``, e.g. OpenAI's ``ViT-B-16.pt``),
read without running anything from the file: ``<root>/data.pkl`` is unpickled into tensors and
inert stand-ins only, the classes' parameters and buffers are read from ``<root>/code/`` as text."""
# TorchScript's own loader runs the archive's code (a ``__setstate__`` can write any file).
import ast
import io
import os
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from .checkpoint import CheckpointError
from .files import check_declared_size

ZIP_MAGIC = (b'PK\x03\x04', b'PK\x05\x06')  # a zip's first entry, or an empty zip
MAX_PICKLE_BYTES = 256 << 20  # data.pkl and code files are small (ViT-L/14: < 1 MiB)
# torch.jit.save stores entries uncompressed and weights deflate by ~1.1x: an entry (or archive)
# inflating by more is built to exhaust memory; small ones (code, pickles) may within the slack
MAX_INFLATION = 16
INFLATION_SLACK = 1 << 20
MAX_DEPTH = 64  # module nesting (OpenAI CLIP: 6)

# storage classes a TorchScript pickle names (``torch.FloatStorage``, ...) -> dtype
STORAGE_DTYPES = {
    'DoubleStorage': torch.float64, 'FloatStorage': torch.float32, 'HalfStorage': torch.float16,
    'BFloat16Storage': torch.bfloat16, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8,
    'BoolStorage': torch.bool, 'ComplexFloatStorage': torch.complex64,
    'ComplexDoubleStorage': torch.complex128,
}
_MODULE_RE = re.compile(r'__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*$')
_NAME_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_]*$')


class ArchiveObject:
    """Inert stand-in for an object of a class of the archive (``__torch__.*``): only its state."""
    __slots__ = ('state', )
    archive_type = ''

    def __new__(cls, *args):
        obj = object.__new__(cls)
        obj.state = None
        return obj

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        self.state = state


class _Frozen:
    """One read-only value (a pickle's BUILD cannot change it: no __dict__, no settable slot)."""
    __slots__ = ('value', )

    def __init__(self, value):
        object.__setattr__(self, 'value', value)

    def __setattr__(self, name, value):
        raise AttributeError(f'{type(self).__name__} is read-only')


class _StorageType(_Frozen):
    """What the pickle gets for ``torch.FloatStorage`` & co.: the dtype (``value``)."""
    __slots__ = ()


class _Call(_Frozen):
    """The only functions a pickle may call (``value``)."""
    __slots__ = ()

    def __call__(self, *args):
        return self.value(*args)


def _plain_list(data):
    if not isinstance(data, list):
        raise pickle.UnpicklingError(f'a list builder got a {type(data).__name__}')
    return data


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a TorchScript archive, building nothing but tensors."""

    def __init__(self, zf: zipfile.ZipFile, root: str, path: str, data: bytes):
        super().__init__(io.BytesIO(data))
        self.zf, self.root, self.path = zf, root, path
        self.storages: Dict[str, torch.Tensor] = {}
        self.storage_ids = set()
        self.classes: Dict[Tuple[str, str], type] = {}
        self.big_endian = False
        byteorder = f'{root}/byteorder'
        if byteorder in zf.namelist():
            self.big_endian = zf.read(byteorder).strip() == b'big'
        self.safe = {
            ('torch._utils', '_rebuild_tensor_v2'): _Call(self.rebuild_tensor),
            ('collections', 'OrderedDict'): OrderedDict,
            # lists written with their element type (old and new archives): plain lists
            ('torch.jit._pickle', 'build_intlist'): _Call(_plain_list),
            ('torch.jit._pickle', 'build_doublelist'): _Call(_plain_list),
            ('torch.jit._pickle', 'build_boollist'): _Call(_plain_list),
            ('torch.jit._pickle', 'build_tensorlist'): _Call(_plain_list),
            ('torch.jit._pickle', 'build_genericlist'): _Call(_plain_list),
            ('torch.jit._pickle', 'restore_type_tag'): _Call(lambda value, type_str: value),
        }

    def find_class(self, module: str, name: str):
        if (module, name) in self.safe:
            return self.safe[(module, name)]
        if module == 'torch' and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if _MODULE_RE.match(module) and _NAME_RE.match(name):
            if (module, name) not in self.classes:
                qualname = f'{module}.{name}'
                self.classes[(module, name)] = type(name, (ArchiveObject, ), {
                    '__slots__': (), 'archive_type': qualname, '__qualname__': qualname})
            return self.classes[(module, name)]
        raise CheckpointError(
            f'refused to read {self.path}: its data.pkl asks for {module}.{name}, which is not a '
            f'tensor, a storage or one of the archive\'s own module classes. Nothing from the file '
            f'was run. Only use weight files from sources you trust')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f'unexpected persistent reference {str(pid)[:100]}')
        dtype, key, numel = pid[1].value, pid[2], pid[4]
        if key in self.storages:
            storage = self.storages[key]
            if storage.dtype != dtype or storage.numel() != numel:
                raise pickle.UnpicklingError(f'storage {key} is referenced with two types')
            return storage
        name = f'{self.root}/data/{key}'
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise pickle.UnpicklingError(f'the archive has no entry {name}') from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if info.file_size != numel * itemsize:
            raise pickle.UnpicklingError(
                f'entry {name} holds {info.file_size} bytes, its reference {numel} x {itemsize}')
        storage = torch.empty(numel, dtype=dtype)
        if numel:
            raw = storage.view(torch.uint8).numpy()
            with self.zf.open(info) as f:
                done = 0
                while done < raw.nbytes:
                    n = f.readinto(memoryview(raw)[done:])
                    if not n:
                        raise pickle.UnpicklingError(f'entry {name} is truncated')
                    done += n
            if self.big_endian != (sys.byteorder == 'big') and itemsize > 1:
                swapped = storage.view(torch.uint8).view(numel, itemsize).flip(1)
                storage.view(torch.uint8).view(numel, itemsize).copy_(swapped)
        self.storages[key] = storage
        self.storage_ids.add(id(storage))
        return storage

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        """``torch._utils._rebuild_tensor_v2`` on a storage of this archive, arguments checked."""
        ints = (lambda t: isinstance(t, tuple) and all(isinstance(i, int) and i >= 0 for i in t))
        if not (id(storage) in self.storage_ids and isinstance(offset, int) and offset >= 0
                and ints(size) and ints(stride) and len(size) == len(stride)
                and isinstance(requires_grad, bool) and isinstance(hooks, dict) and not hooks
                and not metadata):
            raise pickle.UnpicklingError('a tensor with unexpected arguments')
        if all(size):  # the last element must lie inside the storage
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel():
                raise pickle.UnpicklingError(
                    f'a tensor of size {size} reaches past its storage of {storage.numel()}')
        return storage.as_strided(size, stride, offset)


def _root_of(zf: zipfile.ZipFile) -> Optional[str]:
    """The archive's top folder if it is a TorchScript archive (it has ``constants.pkl``)."""
    for name in zf.namelist():
        parts = name.split('/')
        if len(parts) == 2 and parts[1] == 'constants.pkl':
            return parts[0]
    return None


def is_torchscript_archive(path: str) -> bool:
    """Whether ``path`` is a readable zip laid out as ``torch.jit.save`` writes it."""
    try:
        with zipfile.ZipFile(path) as zf:
            return _root_of(zf) is not None
    except (zipfile.BadZipFile, OSError):
        return False


def looks_like_zip(path: str) -> bool:
    with open(path, 'rb') as f:
        return f.read(4) in ZIP_MAGIC


class _ClassInfo:
    __slots__ = ('is_module', 'parameters', 'buffers', 'own_setstate')

    def __init__(self, is_module: bool):
        self.is_module = is_module
        self.parameters: List[str] = []
        self.buffers: List[str] = []
        self.own_setstate = False


def check_entry_sizes(zf: zipfile.ZipFile, path: str, root: str) -> None:
    """Refuse (CheckpointError), before any entry is read, entries declaring implausible sizes
    (beyond the file, :data:`MAX_INFLATION` or, outside ``data/``, :data:`MAX_PICKLE_BYTES`)."""
    archive = os.path.getsize(path)
    total = 0
    try:
        for info in zf.infolist():
            name = info.filename
            check_declared_size(path, f'its entry {name} (compressed)', info.compress_size,
                                archive - info.header_offset, at_most=True)
            if info.compress_type == zipfile.ZIP_STORED:
                check_declared_size(path, f'its stored entry {name}', info.file_size,
                                    info.compress_size)
            total += info.file_size
            if (info.file_size > MAX_INFLATION * info.compress_size + INFLATION_SLACK
                    or total > MAX_INFLATION * archive + INFLATION_SLACK):
                raise CheckpointError(
                    f'refused to read {path}: its entry {name} declares {info.file_size} bytes '
                    f'compressed into {info.compress_size} (entries so far: {total} bytes from '
                    f'a {archive}-byte file); weights do not compress that much, so the '
                    f'archive is damaged or built to exhaust memory. Nothing was read from it')
            if not name.startswith(f'{root}/data/') and info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f'refused to read {path}: its entry {name} declares {info.file_size} bytes, '
                    f'more than a TorchScript archive holds outside data/ (at most '
                    f'{MAX_PICKLE_BYTES}). Nothing was read from it')
    except CheckpointError:
        raise
    except ValueError as e:  # check_declared_size's
        raise CheckpointError(str(e)) from None


def _class_infos(zf: zipfile.ZipFile, root: str, module: str, path: str) -> Dict[str, _ClassInfo]:
    """The classes in ``code/<module as path>.py`` (scanned as text, never compiled)."""
    name = f'{root}/code/' + module.replace('.', '/') + '.py'
    try:
        text = zf.read(name).decode('utf-8')
    except KeyError:
        raise CheckpointError(f'{path} is not a usable TorchScript archive: it has no {name} '
                              f'describing the class(es) of {module}') from None
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f'{path} is a damaged TorchScript archive ({name}: {e})') from None
    infos: Dict[str, _ClassInfo] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r'class ([A-Za-z_]\w*)\(([\w.]+)\):', line)
        if m:
            current = infos[m.group(1)] = _ClassInfo(m.group(2) == 'Module')
            continue
        if current is None or not line.startswith('  ') or line.startswith('   '):
            continue
        m = re.match(r'  (__parameters__|__buffers__) = (\[.*\])\s*$', line)
        if m:
            names = ast.literal_eval(m.group(2))  # a list of string literals, never run
            if not all(isinstance(n, str) for n in names):
                raise CheckpointError(f'{path}: {name} has an unreadable {m.group(1)} list')
            setattr(current, m.group(1).strip('_'), names)
        elif re.match(r'  def __setstate__\(', line):
            current.own_setstate = True
    return infos


def read_torchscript_state_dict(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict of the TorchScript archive ``path``, as TorchScript's loader gives it.

    Raises:
        CheckpointError: not a readable TorchScript archive, or its pickle asks for a type
            other than tensors and the archive's own module classes.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f'{path} is a damaged or truncated zip archive ({e}); download '
                              f'it again') from None
    with zf:
        root = _root_of(zf)
        if root is None or f'{root}/data.pkl' not in zf.namelist():
            raise CheckpointError(f'{path} is not a TorchScript archive (no <root>/constants.pkl '
                                  f'and <root>/data.pkl)')
        check_entry_sizes(zf, path, root)
        try:
            data = zf.read(f'{root}/data.pkl')
            unpickler = _ArchiveUnpickler(zf, root, path, data)
            top = unpickler.load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError, ValueError,
                TypeError, AttributeError, IndexError, KeyError, RuntimeError) as e:
            raise CheckpointError(f'{path} is a damaged TorchScript archive ({type(e).__name__}: '
                                  f'{str(e)[:200]})') from None
        infos: Dict[str, Dict[str, _ClassInfo]] = {}

        def info_of(obj: ArchiveObject) -> _ClassInfo:
            module, _, name = obj.archive_type.rpartition('.')
            if module not in infos:
                infos[module] = _class_infos(zf, root, module, path)
            if name not in infos[module]:
                raise CheckpointError(f'{path} is not a usable TorchScript archive: the class '
                                      f'{obj.archive_type} is not defined in its code/')
            return infos[module][name]

        out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
        stack: List[int] = []

        def walk(obj: ArchiveObject, prefix: str) -> None:
            info = info_of(obj)
            if not info.is_module:
                raise CheckpointError(f'{path}: {prefix or "the top object"} is a '
                                      f'{obj.archive_type}, not a module')
            if info.own_setstate:
                raise CheckpointError(
                    f'refused to read {path}: its class {obj.archive_type} restores its state '
                    f'with its own code (__setstate__), which is not run here; an archive of '
                    f'weights needs none. Only use weight files from sources you trust')
            if id(obj) in stack or len(stack) >= MAX_DEPTH:
                raise CheckpointError(f'{path}: the module tree loops or nests too deep at '
                                      f'{prefix[:200]}')
            state = obj.state
            if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                raise CheckpointError(f'{path}: {obj.archive_type} has no attribute dict')
            stack.append(id(obj))
            for names in (info.parameters, info.buffers):
                for k in [k for k in state if k in names]:  # slot order, as named_parameters
                    v = state[k]
                    if v is None:
                        continue
                    if not isinstance(v, torch.Tensor) or v._backward_hooks:
                        raise CheckpointError(f'{path}: {prefix}{k} is declared a tensor, '
                                              f'holds a {type(v).__name__}')
                    out[prefix + k] = v
            for k, v in state.items():
                if isinstance(v, ArchiveObject) and info_of(v).is_module:
                    walk(v, f'{prefix}{k}.')
            stack.pop()

        if not isinstance(top, ArchiveObject):
            raise CheckpointError(f'{path}: its data.pkl holds a {type(top).__name__}, not a '
                                  f'module')
        walk(top, '')
    return out
