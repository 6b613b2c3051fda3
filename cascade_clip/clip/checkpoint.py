"""Reading OpenAI CLIP checkpoints and mapping their keys onto this project's encoders.

The CLIP file is the TorchScript archive OpenAI publishes (``ViT-B-16.pt``), read without
running any of it, or a plain state dict with the same keys. The key mapping is pure (``convert_clip_visual`` /
``convert_clip_text``) so it can be tested on a tiny state dict without any file.
"""
import math
import os.path as osp
import zipfile
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..utils.checkpoint import CheckpointError, is_remote, remote_message, safe_load
from ..utils.torchscript import is_torchscript_archive, looks_like_zip, read_torchscript_state_dict

StateDict = Dict[str, torch.Tensor]

CLIP_HELP = ('CLIP weights are the OpenAI release files (e.g. ViT-B-16.pt, from the links in '
             'https://github.com/openai/CLIP/blob/main/clip/clip.py); put them in '
             'clip_pretrain/ or point the config\'s `pretrained` at them')


def load_clip_state_dict(path: str) -> StateDict:
    """Read a CLIP checkpoint (TorchScript archive or state dict) as fp32 tensors on the CPU.

    Nothing from the file runs: a TorchScript archive's weights are read from its zip entries
    by :func:`read_torchscript_state_dict` (its code is never compiled), any other file goes
    through :func:`safe_load`.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: a URL or other remote source, an archive asking for anything but
            weights, or a damaged file.
        ValueError: the file is neither a TorchScript archive nor a state dict of CLIP keys.
    """
    if is_remote(path):
        raise CheckpointError(remote_message(path, 'CLIP checkpoint') + f'. {CLIP_HELP}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'CLIP checkpoint not found: {path}. {CLIP_HELP}')
    state_dict = None
    if looks_like_zip(path) and (is_torchscript_archive(path) or not zipfile.is_zipfile(path)):
        # OpenAI's release files are TorchScript archives (a damaged zip is reported as such)
        state_dict = read_torchscript_state_dict(path)
    else:
        try:
            obj = safe_load(path)
        except CheckpointError as e:
            raise CheckpointError(f'{path} is not a CLIP checkpoint: it is neither a TorchScript '
                                  f'archive nor a usable torch state dict ({e})') from None
        if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
            obj = obj['state_dict']
        if isinstance(obj, dict):
            state_dict = obj
    if not isinstance(state_dict, dict) or not any(
            k.startswith('visual.') or k.startswith('transformer.') for k in state_dict):
        raise ValueError(f'{path} is not a CLIP checkpoint: expected keys such as '
                         f'"visual.conv1.weight" and "transformer.resblocks.0.attn.in_proj_weight"')
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def resize_pos_embed(pos_embed: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Resize a ViT position embedding (1 + g*g, C) to (1 + H*W, C), grid = (H, W).

    The source grid g is read off the tensor (sqrt of its length minus the class row);
    the class row is kept and the spatial part resized bilinearly (align_corners=False).
    """
    n, c = pos_embed.shape
    src = int(round(math.sqrt(n - 1)))
    if src * src != n - 1:
        raise ValueError(f'positional_embedding of length {n} is not 1 + a square grid')
    if (src, src) == tuple(grid):
        return pos_embed
    spatial = pos_embed[1:].reshape(1, src, src, c).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial.float(), size=tuple(grid), mode='bilinear', align_corners=False)
    spatial = spatial.reshape(c, grid[0] * grid[1]).t().to(pos_embed.dtype)
    return torch.cat([pos_embed[:1], spatial], dim=0)


def convert_clip_visual(state_dict: StateDict) -> StateDict:
    """Keys of the image tower: those under ``visual.``, with the prefix removed."""
    return {k[len('visual.'):]: v for k, v in state_dict.items() if k.startswith('visual.')}


TEXT_KEYS = ('positional_embedding', 'text_projection')
TEXT_PREFIXES = ('transformer.', 'token_embedding.', 'ln_final.')


def convert_clip_text(state_dict: StateDict, context_length: int = 77) -> StateDict:
    """Keys of the text tower; ``positional_embedding`` truncated to ``context_length``."""
    out = {}
    for k, v in state_dict.items():
        if k in TEXT_KEYS or k.startswith(TEXT_PREFIXES):
            if k == 'positional_embedding' and v.shape[0] > context_length:
                v = v[:context_length]
            out[k] = v
    return out
