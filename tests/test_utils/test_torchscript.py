"""TorchScript archives (OpenAI's CLIP format) read without running anything from them."""
import os
import pickle
import zipfile
from typing import Tuple

import pytest
import torch
import torch.nn as nn

from cascade_clip.clip import load_clip_state_dict
from tools.demo_data.tiny_clip import make_tiny_clip
from cascade_clip.utils import CheckpointError
from cascade_clip.utils.torchscript import read_torchscript_state_dict
from tests.conftest import TINY


def script_save(module: nn.Module, path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.script's deprecation notice
        torch.jit.script(module).save(str(path))


def rewrite(src, dst, replace):
    """Copy archive ``src`` to ``dst`` with the entries in ``replace`` (suffix -> bytes or None
    to drop the entry)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            hit = [s for s in replace if info.filename.endswith(s)]
            if not hit:
                zout.writestr(info.filename, zin.read(info))
            elif replace[hit[0]] is not None:
                zout.writestr(info.filename, replace[hit[0]])


def calling(module: str, name: str, args: tuple) -> bytes:
    """A data.pkl whose top module's ``visual`` attribute is ``module.name(*args)``: what a
    crafted CLIP file carries (GLOBAL + REDUCE, the global spelled as given)."""
    call = f'c{module}\n{name}\n'.encode() + pickle.dumps(args, protocol=2)[2:-1] + b'R'
    return b'\x80\x02}X\x06\x00\x00\x00visual' + call + b's.'


class WithBuffers(nn.Module):
    """Parameters, buffers (persistent), a None bias and a plain tensor attribute (as CLIP's
    text ``attn_mask``), which is no part of the state dict."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Parameter(torch.randn(3, 2))
        self.register_buffer('input_resolution', torch.tensor(224))
        self.attn_mask = torch.full((2, 2), float('-inf')).triu(1)
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.blocks = nn.ModuleList([nn.BatchNorm2d(3), nn.Linear(2, 2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn_mask.sum()


class WritesOnLoad(nn.Module):
    """Its TorchScript ``__setstate__`` maps (creating or overwriting) a file of the path it
    carries, as a crafted CLIP file would: TorchScript's own loader runs it."""

    def __init__(self, target: str):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.target = target

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.weight, self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.target = state[1]
        self.training = state[2]
        self.weight = state[0] + torch.from_file(state[1], shared=True, size=2, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_tiny_clip_archive_gives_exactly_its_state_dict(tmp_path):
    model = make_tiny_clip(0, **TINY).eval()
    path = tmp_path / 'ViT-tiny.pt'
    script_save(model, path)
    expected = model.state_dict()
    got = read_torchscript_state_dict(str(path))
    assert list(got) == list(expected)  # the keys, in the module's order
    assert 'visual.conv1.weight' in got and 'transformer.resblocks.0.attn.in_proj_weight' in got
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k], v), k  # bit-identical
    # OpenAI's files are fp16: read as fp16, converted to fp32 by the CLIP loader
    half = tmp_path / 'ViT-half.pt'
    script_save(make_tiny_clip(0, **TINY).half().eval(), half)
    got = read_torchscript_state_dict(str(half))
    assert got['visual.proj'].dtype == torch.float16
    loaded = load_clip_state_dict(str(half))
    for k, v in expected.items():
        assert loaded[k].dtype == torch.float32 and torch.equal(loaded[k], v.half().float()), k


def test_big_endian_archive(tiny_clip, tmp_path):
    """An archive written on a big-endian machine: its ``byteorder`` entry says "big" and
    every storage is stored most significant byte first."""
    import numpy as np
    path = tmp_path / 'big.pt'
    with zipfile.ZipFile(tiny_clip[0]) as zin, zipfile.ZipFile(path, 'w') as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if '/data/' in info.filename:  # every tensor of the tiny CLIP is float32
                data = np.frombuffer(data, '<f4').astype('>f4').tobytes()
            elif info.filename.endswith('/byteorder'):
                data = b'big'
            zout.writestr(info.filename, data)
    got = read_torchscript_state_dict(str(path))
    assert list(got) == list(tiny_clip[2])
    for k, v in tiny_clip[2].items():
        assert torch.equal(got[k], v), k


def test_buffers_count_plain_tensor_attributes_do_not(tmp_path):
    torch.manual_seed(0)
    model = WithBuffers()
    path = tmp_path / 'm.pt'
    script_save(model, path)
    got = read_torchscript_state_dict(str(path))
    assert list(got) == ['proj', 'input_resolution', 'conv.weight', 'blocks.0.weight',
                         'blocks.0.bias', 'blocks.0.running_mean', 'blocks.0.running_var',
                         'blocks.0.num_batches_tracked', 'blocks.1.weight', 'blocks.1.bias']
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v), k


def test_setstate_code_is_refused_and_never_runs(tmp_path):
    target = tmp_path / 'written_by_the_archive.pth'
    path = tmp_path / 'ViT-B-16.pt'
    script_save(WritesOnLoad(str(target)), path)
    assert not target.exists()
    with pytest.raises(CheckpointError, match=r'refused to read .*ViT-B-16.pt: its class '
                       r'__torch__\..*WritesOnLoad restores its state with its own code'):
        load_clip_state_dict(str(path))
    assert not target.exists()


@pytest.mark.parametrize('name', ['posix.system', 'builtins.eval', 'torch.from_file'])
def test_pickle_asking_for_other_globals_is_refused(tiny_clip, tmp_path, name):
    target = tmp_path / 'PWNED'
    args = {'posix.system': (f'touch {target}', ), 'builtins.eval': (f'open({str(target)!r}, "w")', ),
            'torch.from_file': (str(target), True, 16)}[name]
    evil = tmp_path / 'evil.pt'
    rewrite(tiny_clip[0], evil, {'/data.pkl': calling(*name.split('.'), args)})
    # the crafted pickle does what it says when unpickled without restriction
    unrestricted = tmp_path / 'unrestricted'
    pickle.loads(calling(*name.split('.'), tuple(str(a).replace(str(target), str(unrestricted))
                                                 if isinstance(a, str) else a for a in args)))
    assert unrestricted.exists()
    with pytest.raises(CheckpointError) as e:
        load_clip_state_dict(str(evil))
    msg = str(e.value)
    assert f'refused to read {evil}: its data.pkl asks for {name}' in msg
    assert 'Nothing from the file was run' in msg
    assert not target.exists()


def test_damaged_archives_name_the_file(tiny_clip, tmp_path):
    data = open(tiny_clip[0], 'rb').read()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'truncated.pt is a damaged or truncated zip archive'):
        load_clip_state_dict(str(truncated))
    holed = tmp_path / 'holed.pt'
    rewrite(tiny_clip[0], holed, {'/data/3': None})
    with pytest.raises(CheckpointError, match=r'holed.pt is a damaged TorchScript archive .*has no entry '
                       r'tiny-ViT/data/3'):
        load_clip_state_dict(str(holed))
    short = tmp_path / 'short.pt'
    rewrite(tiny_clip[0], short, {'/data/3': b'\0' * 8})
    with pytest.raises(CheckpointError, match=r'short.pt is a damaged TorchScript archive .*data/3 holds '
                       r'8 bytes'):
        load_clip_state_dict(str(short))
    # a zip that is no torch file at all
    other = tmp_path / 'notes.zip'
    with zipfile.ZipFile(other, 'w') as z:
        z.writestr('notes/readme.txt', 'hello')
    with pytest.raises(ValueError, match=r'notes.zip is not a CLIP checkpoint'):
        load_clip_state_dict(str(other))


def test_tool_and_model_refuse_the_archive_before_it_writes(tmp_path):
    """build_text_embeddings.py --clip and a model's CLIP `pretrained` (what tools/train.py
    and the API build) read the archive through the same reader: refused, nothing written."""
    import os.path as osp
    import subprocess
    import sys
    from tests.tiny import build, tiny_model_cfg
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    target = tmp_path / 'written_by_the_archive.pth'
    evil = tmp_path / 'ViT-B-16.pt'
    script_save(WritesOnLoad(str(target)), evil)
    with pytest.raises(CheckpointError, match=f'refused to read {evil}: its class __torch__.'):
        build(tiny_model_cfg(pretrained=str(evil)))
    assert not target.exists()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    r = subprocess.run([sys.executable, 'tools/build_text_embeddings.py', '--clip', str(evil),
                        '--classes', 'sky,road', '--out', str(tmp_path / 'emb.npy')],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and f'refused to read {evil}: its class __torch__.' in r.stderr
    assert not target.exists() and not (tmp_path / 'emb.npy').exists()


# ---------------------------------------------------------------- sizes checked before reading
def patch_entry(path, name, method=None, crc=None, usize=None) -> None:
    """Rewrite, in place, the compression method, CRC and uncompressed size that the local
    header and the central directory of the zip ``path`` declare for the entry ``name``."""
    import struct
    data = bytearray(open(path, 'rb').read())
    raw = name.encode()
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(name).header_offset
    central = [i for i in range(len(data)) if data[i:i + 4] == b'PK\x01\x02'
               and data[i + 46:i + 46 + len(raw)] == raw]
    assert data[local:local + 4] == b'PK\x03\x04' and len(central) == 1
    # (method, crc, uncompressed size) offsets: local header 8/14/22, central record 10/16/24
    for base, (m, c, u) in ((local, (8, 14, 22)), (central[0], (10, 16, 24))):
        if method is not None:
            struct.pack_into('<H', data, base + m, method)
        if crc is not None:
            struct.pack_into('<I', data, base + c, crc)
        if usize is not None:
            struct.pack_into('<I', data, base + u, usize)
    open(path, 'wb').write(bytes(data))


def deflated_zeros(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zero bytes, ~1 KiB per MiB: one flushed segment
    repeated (a full flush resets the history, so the segments are interchangeable)."""
    import zlib
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    return segment * mib + co.flush()


class OneTensor(nn.Module):

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_stored_entry_declaring_a_huge_size_is_refused_before_reading(tiny_clip, tmp_path):
    forged = tmp_path / 'forged.pt'
    rewrite(tiny_clip[0], forged, {})
    stored = zipfile.ZipFile(forged).getinfo('tiny-ViT/data/0').compress_size
    patch_entry(forged, 'tiny-ViT/data/0', usize=1_500_000_000)
    with pytest.raises(CheckpointError) as e:
        load_clip_state_dict(str(forged))
    assert str(e.value) == (f'{forged}: its stored entry tiny-ViT/data/0 declares 1500000000 '
                            f'bytes of data, but the file holds {stored}: the file is damaged, '
                            f'truncated or forged')


def test_inflating_entry_is_refused_before_reading(tmp_path, monkeypatch):
    """A 1.4 MB archive whose pickle references a 1.5 GB tensor held by a data/0 entry of
    deflated zeros (the sizes agree, so only the compression ratio gives it away): refused
    before any entry is opened, and memory stays small."""
    import resource
    import struct
    small, numel = 70001, 375_000_000  # 1.5 GB of float32
    src = tmp_path / 'src.pt'
    script_save(OneTensor(small), src)
    with zipfile.ZipFile(src) as z:
        root = z.namelist()[0].split('/')[0]
        pkl = z.read(f'{root}/data.pkl')
    # the storage's element count and the tensor's size are both pickled as BININT
    assert pkl.count(b'J' + struct.pack('<i', small)) == 2
    pkl = pkl.replace(b'J' + struct.pack('<i', small), b'J' + struct.pack('<i', numel))
    bomb = tmp_path / 'ViT-B-16-bomb.pt'
    rewrite(src, bomb, {'/data.pkl': pkl, '/data/0': deflated_zeros(1430)})
    patch_entry(bomb, f'{root}/data/0', method=zipfile.ZIP_DEFLATED, usize=numel * 4)
    info = zipfile.ZipFile(bomb).getinfo(f'{root}/data/0')
    assert info.file_size == numel * 4 and os.path.getsize(bomb) < 1_500_000

    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, 'open', lambda self, name, *a, **k: (
        opened.append(getattr(name, 'filename', name)), real_open(self, name, *a, **k))[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError) as e:
        load_clip_state_dict(str(bomb))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert str(e.value).startswith(
        f'refused to read {bomb}: its entry {root}/data/0 declares 1500000000 bytes compressed '
        f'into {info.compress_size}')
    assert 'Nothing was read from it' in str(e.value)
    assert opened == []  # refused from the zip's directory alone
    assert grown_kib < 1 << 20  # coarse: well under the 1.5 GB the entry inflates to


def test_large_pickle_entry_is_refused_before_reading(tiny_clip, tmp_path, monkeypatch):
    import cascade_clip.utils.torchscript as ts
    size = zipfile.ZipFile(tiny_clip[0]).getinfo('tiny-ViT/data.pkl').file_size
    monkeypatch.setattr(ts, 'MAX_PICKLE_BYTES', size - 1)
    with pytest.raises(CheckpointError, match=f'refused to read {tiny_clip[0]}: its entry '
                       f'tiny-ViT/data.pkl declares {size} bytes, more than a TorchScript '
                       f'archive holds outside data/'):
        load_clip_state_dict(tiny_clip[0])
