"""Reading CLIP checkpoints (OpenAI, open_clip, Hugging Face: told apart by their keys) and pure
key mappings onto OpenAI's layout, which the encoders load."""
import functools
import hashlib
import logging
import math
import os
import os.path as osp
import re
import zipfile
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from mmcv.utils import print_log
from mmseg.utils import get_root_logger

from ..utils.checkpoint import (CheckpointError, is_remote, read_safetensors, remote_message,
                                safe_load, state_dict_of)
from ..utils.torchscript import is_torchscript_archive, looks_like_zip, read_torchscript_state_dict

StateDict = Dict[str, torch.Tensor]

# OpenAI's release files: name -> SHA-256, as in the URLs of openai/CLIP's clip/clip.py _MODELS
OPENAI_URL = 'https://openaipublic.azureedge.net/clip/models/{sha256}/{name}'
OPENAI_RELEASES = {
    'RN50.pt': 'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762',
    'RN101.pt': '8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599',
    'RN50x4.pt': '7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd',
    'RN50x16.pt': '52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa',
    'RN50x64.pt': 'be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c',
    'ViT-B-32.pt': '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af',
    'ViT-B-16.pt': '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f',
    'ViT-L-14.pt': 'b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836',
    'ViT-L-14-336px.pt': '3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02',
}

# the layouts accepted -> keys that tell them apart (the first is quoted in messages)
OPENAI_PREFIXES = ('visual.', 'transformer.', 'token_embedding.')
HF_PREFIXES = ('vision_model.', 'text_model.')
LAYOUTS = {
    'OpenAI CLIP: its TorchScript archive (ViT-B-16.pt), or a state dict or .safetensors file '
    'with its keys (open_clip\'s copy of the OpenAI weights)':
    ('visual.conv1.weight', 'transformer.resblocks.0.attn.in_proj_weight'),
    'Hugging Face transformers CLIPModel (model.safetensors, pytorch_model.bin)':
    ('vision_model.embeddings.patch_embedding.weight',
     'text_model.encoder.layers.0.self_attn.q_proj.weight'),
}

CLIP_HELP = ('CLIP weights are OpenAI\'s release files (e.g. ViT-B-16.pt, from the links in '
             'https://github.com/openai/CLIP/blob/main/clip/clip.py), open_clip\'s copy of them '
             '(open_clip_model.safetensors) or Hugging Face\'s openai/clip-vit-base-patch16 '
             '(model.safetensors); put the file in clip_pretrain/ or point the config\'s '
             '`pretrained` at it')


def load_clip_state_dict(path: str) -> StateDict:
    """Read a CLIP checkpoint, running nothing from it, as an OpenAI-layout state dict of fp32
    tensors on the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: a URL or other remote source, an archive asking for anything but
            weights, or a damaged file.
        ValueError: the file's keys are in none of the :data:`LAYOUTS` (the message lists them).
    """
    if is_remote(path):
        raise CheckpointError(remote_message(path, 'CLIP checkpoint') + f'. {CLIP_HELP}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'CLIP checkpoint not found: {path}. {CLIP_HELP}')
    check_openai_release(path)
    if looks_like_zip(path) and (is_torchscript_archive(path) or not zipfile.is_zipfile(path)):
        # OpenAI's release files are TorchScript archives (a damaged zip is reported as such)
        state_dict = read_torchscript_state_dict(path)
    elif path.endswith('.safetensors') or looks_like_safetensors(path):
        state_dict = read_safetensors(path)
    else:
        try:
            obj = safe_load(path)
        except CheckpointError as e:
            raise CheckpointError(f'{path} is not a CLIP checkpoint: it is neither a TorchScript '
                                  f'archive, a .safetensors file nor a usable torch state dict '
                                  f'({e})') from None
        try:
            state_dict = state_dict_of(obj, path)
        except CheckpointError:
            state_dict = {}
    if any(k.startswith(HF_PREFIXES) for k in state_dict):
        try:
            state_dict = convert_hf_clip(state_dict)
        except ValueError as e:
            raise ValueError(f'{path} is not a usable Hugging Face CLIP checkpoint: {e}') from None
    elif not any(k.startswith(OPENAI_PREFIXES) for k in state_dict):
        keys = ', '.join(f'"{k}"' for k in list(state_dict)[:3])
        what = f'its keys ({keys}, ...) are' if keys else 'it holds no dict of tensors, so it is'
        layouts = '; '.join(f'{name}: keys such as "{a}", "{b}"'
                            for name, (a, b) in LAYOUTS.items())
        raise ValueError(f'{path} is not a CLIP checkpoint: {what} in none of the layouts read '
                         f'here. {layouts}.')
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def looks_like_safetensors(path: str) -> bool:
    """Whether ``path`` starts as a .safetensors file does: an 8-byte header length, then ``{``."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:] == b'{' and int.from_bytes(head[:8], 'little') < 1 << 30


def check_openai_release(path: str) -> None:
    """Warn when a file named as one of OpenAI's releases has another SHA-256 than the release."""
    if osp.basename(path) in OPENAI_RELEASES:
        st = os.stat(path)
        _check_release(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _check_release(path: str, size: int, mtime_ns: int) -> None:
    """:func:`check_openai_release` once per file version (both encoders read the file)."""
    name = osp.basename(path)
    expected, actual = OPENAI_RELEASES[name], sha256_of(path)
    if actual != expected:
        print_log(f'{path} has SHA-256 {actual}, but OpenAI\'s {name} has {expected} '
                  f'({OPENAI_URL.format(sha256=expected, name=name)}): the file is damaged or '
                  f'not OpenAI\'s release; download it again if results look wrong',
                  logger=get_root_logger(), level=logging.WARNING)


HASH_CHUNK = 16 << 20  # release files are 150-900 MB


def sha256_of(path: str) -> str:
    """SHA-256 of a file, read in chunks of :data:`HASH_CHUNK` bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


# Hugging Face CLIPModel -> OpenAI: whole names outside the transformer blocks
HF_NAMES = {
    'logit_scale': 'logit_scale',
    'vision_model.embeddings.class_embedding': 'visual.class_embedding',
    'vision_model.embeddings.patch_embedding.weight': 'visual.conv1.weight',
    'vision_model.embeddings.position_embedding.weight': 'visual.positional_embedding',
    'vision_model.pre_layrnorm.weight': 'visual.ln_pre.weight',  # sic: transformers' spelling
    'vision_model.pre_layrnorm.bias': 'visual.ln_pre.bias',
    'vision_model.post_layernorm.weight': 'visual.ln_post.weight',
    'vision_model.post_layernorm.bias': 'visual.ln_post.bias',
    'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
    'text_model.embeddings.position_embedding.weight': 'positional_embedding',
    'text_model.final_layer_norm.weight': 'ln_final.weight',
    'text_model.final_layer_norm.bias': 'ln_final.bias',
}
# Linear weights (out, in) holding OpenAI's (in, out) projection matrices
HF_TRANSPOSED = {'visual_projection.weight': 'visual.proj',
                 'text_projection.weight': 'text_projection'}
# buffers of token indices 0..n-1 (older files carry them): nothing to load
HF_DROPPED = ('vision_model.embeddings.position_ids', 'text_model.embeddings.position_ids')
HF_TOWERS = {'vision_model': 'visual.transformer.resblocks', 'text_model': 'transformer.resblocks'}
HF_BLOCK = {'layer_norm1': 'ln_1', 'layer_norm2': 'ln_2', 'mlp.fc1': 'mlp.c_fc',
            'mlp.fc2': 'mlp.c_proj', 'self_attn.out_proj': 'attn.out_proj'}
_HF_BLOCK_RE = re.compile(
    r'(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$')
_HF_QKV_RE = re.compile(r'self_attn\.([qkv])_proj$')


def convert_hf_clip(state_dict: StateDict) -> StateDict:
    """Hugging Face transformers' ``CLIPModel`` keys -> OpenAI CLIP's, any size.

    q/k/v projections are concatenated into ``attn.in_proj_*``, the projections transposed.

    Raises:
        ValueError: a key that is not part of a CLIPModel, or a block lacking one of q/k/v.
    """
    out: StateDict = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}  # OpenAI in_proj name -> {'q': ..., ...}
    for k, v in state_dict.items():
        block = _HF_BLOCK_RE.match(k)
        if k in HF_NAMES:
            out[HF_NAMES[k]] = v
        elif k in HF_TRANSPOSED:
            out[HF_TRANSPOSED[k]] = v.t()
        elif k in HF_DROPPED:
            continue
        elif block and (block.group(3) in HF_BLOCK or _HF_QKV_RE.match(block.group(3))):
            tower, index, module, param = block.groups()
            prefix = f'{HF_TOWERS[tower]}.{index}'
            part = _HF_QKV_RE.match(module)
            if part:
                qkv.setdefault(f'{prefix}.attn.in_proj_{param}', {})[part.group(1)] = v
            else:
                out[f'{prefix}.{HF_BLOCK[module]}.{param}'] = v
        else:
            raise ValueError(f'the key "{k}" is not part of a Hugging Face CLIPModel')
    for name, parts in qkv.items():
        missing = [p for p in 'qkv' if p not in parts]
        if missing:
            raise ValueError(f'{name} lacks the {"/".join(missing)} projection(s) of its block')
        out[name] = torch.cat([parts['q'], parts['k'], parts['v']], dim=0)
    return out


def resize_pos_embed(pos_embed: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Resize a ViT position embedding (1 + g*g, C) to (1 + H*W, C), grid = (H, W), bilinearly;
    the class row is kept."""
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
