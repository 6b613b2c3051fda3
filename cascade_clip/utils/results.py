"""Evaluation results on disk (``eval_<time>_<pid>.json`` of tools/test.py): written under a
name of their own, read back only when whole, reused only for the same inputs (``result_key``)."""
import glob
import hashlib
import json
import logging
import os
import os.path as osp
import time
from typing import Dict, Optional, Sequence, Tuple

from mmcv.utils import print_log

from .files import atomic_output

_HASHES: Dict[Tuple[str, int, int], str] = {}  # (real path, size, mtime) -> SHA-256


def file_sha256(path: str) -> str:
    """SHA-256 (hex) of the file's content, remembered per (real path, size, mtime)."""
    real = osp.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(real, 'rb') as f:
            for chunk in iter(lambda: f.read(2**20), b''):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def result_key(checkpoint_sha256: str, config: str, images: Sequence[str], evaluation: dict) -> str:
    """SHA-256 (hex) over what an evaluation's figures depend on.

    Args:
        checkpoint_sha256: :func:`file_sha256` of the checkpoint (its content, not its name).
        config: the resolved config's values (``config_values``, after ``--cfg-options``).
        images: the test images' file names, in order.
        evaluation: the evaluation's settings (metrics, options, augmented test).
    """
    inputs = dict(checkpoint=checkpoint_sha256, config=config, images=list(images),
                  evaluation=evaluation)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def eval_json_path(work_dir: str) -> str:
    """``work_dir/eval_<time>_<pid>.json``: two runs started in the same second get two names."""
    return osp.join(work_dir, f'eval_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}.json')


def write_eval_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` whole or not at all, never replacing a file (FileExistsError)."""
    with atomic_output(path, replace=False) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=2)


def read_eval_json(path: str, logger=None) -> Optional[dict]:
    """The content of the eval json ``path``, or None (with a warning) when not a whole result."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get('metric'), dict):
            raise ValueError('no "metric" dict')
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        print_log(f'skipped {path}: not a readable evaluation result ({e})', logger,
                  level=logging.WARNING)
        return None
    return data


def newest_eval(folder: str, key: Optional[str] = None, logger=None) -> Optional[dict]:
    """The newest whole ``eval_*.json`` of ``folder`` (of ``result_key`` ``key``), or None."""
    for path in sorted(glob.glob(osp.join(folder, 'eval_*.json')), reverse=True):
        data = read_eval_json(path, logger)
        if data is not None and (key is None or data.get('result_key') == key):
            return data
    return None
