import os

import pytest
import torch

os.environ.setdefault('OMP_NUM_THREADS', '2')
torch.set_num_threads(2)

# Tiny CLIP used across the tests: ViT with 12 blocks at width 64, 64x64 input, patch 16
# (4x4 grid), text width 32 with 2 blocks, joint embedding 32.
TINY = dict(embed_dim=32, image_resolution=64, vision_patch_size=16, vision_width=64,
            vision_layers=12, vision_heads=4, transformer_width=32, transformer_heads=4,
            transformer_layers=2)


@pytest.fixture(scope='session')
def tiny_clip(tmp_path_factory):
    """(torchscript_path, state_dict_path, state_dict) of one tiny OpenAI-style CLIP."""
    from tools.demo_data.tiny_clip import save_tiny_clip
    d = tmp_path_factory.mktemp('clip')
    ts = str(d / 'tiny-ViT.pt')
    sd_path = str(d / 'tiny-ViT-state.pth')
    sd = save_tiny_clip(ts, torchscript=True, **TINY)
    save_tiny_clip(sd_path, torchscript=False, **TINY)
    return ts, sd_path, sd
