"""Synthetic zero-shot segmentation data: colour x texture classes, compositional text embeddings.

Everything here is deterministic in ``seed``. Used by the offline demo (tools/demo.sh).

* Classes: every (colour, texture) pair, e.g. "red stripes". Some pairs are unseen: their
  pixels are never labelled in segmentation training, but their colour and their texture
  each occur in seen classes.
* Text embeddings: ``normalize(colour_vec + texture_vec)`` with random unit vectors, so a
  class's embedding is composed from its attributes, as CLIP's text space composes words.
* A tiny CLIP whose image tower is pretrained contrastively on image-caption pairs
  (captions name the classes an image shows, never where; only the global embedding is
  supervised) - the analogue of CLIP having seen every concept in web captions, with weak
  dense predictions as real CLIP has - saved as an OpenAI-style TorchScript archive.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import mmcv
import numpy as np
import torch
import torch.nn.functional as F

COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (205, 45, 40), 'green': (45, 170, 70), 'blue': (50, 80, 215), 'yellow': (225, 205, 50)}
TEXTURES = ('flat', 'stripes', 'dots')
UNSEEN = ('red dots', 'green stripes', 'blue flat', 'yellow stripes')


def class_names() -> List[str]:
    return [f'{c} {t}' for c in COLOURS for t in TEXTURES]


def unseen_ids() -> List[int]:
    names = class_names()
    return [names.index(n) for n in UNSEEN]


def text_embeddings(dim: int = 32, seed: int = 0) -> np.ndarray:
    """(num_classes, dim) float32, rows L2-normalised: normalize(colour + texture)."""
    rng = np.random.RandomState(seed)
    vecs = rng.randn(len(COLOURS) + len(TEXTURES), dim)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    col = {c: vecs[i] for i, c in enumerate(COLOURS)}
    tex = {t: vecs[len(COLOURS) + i] for i, t in enumerate(TEXTURES)}
    emb = np.stack([col[c] + tex[t] for c in COLOURS for t in TEXTURES])
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def paint(cls: int, h: int, w: int, rng: np.random.RandomState) -> np.ndarray:
    """(h, w, 3) uint8 RGB patch of class ``cls`` (colour, texture, noise)."""
    colour = np.array(list(COLOURS.values())[cls // len(TEXTURES)], np.float32)
    texture = TEXTURES[cls % len(TEXTURES)]
    y, x = np.mgrid[:h, :w]
    oy, ox = rng.randint(0, 4, size=2)
    if texture == 'flat':
        pattern = np.zeros((h, w), np.float32)
    elif texture == 'stripes':
        pattern = (((y + oy) // 2) % 2).astype(np.float32)
    else:
        pattern = ((((y + oy) % 4) < 2) & (((x + ox) % 4) < 2)).astype(np.float32)
    shade = rng.uniform(0.85, 1.15)
    img = colour[None, None] * shade * (1 - 0.65 * pattern[..., None])
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_sample(rng: np.random.RandomState, size: int = 64, grid: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """An image of 2-4 axis-aligned regions of random classes and its label map."""
    n = len(class_names())
    img = np.zeros((size, size, 3), np.uint8)
    label = np.zeros((size, size), np.uint8)
    cuts = list(range(2 * grid, size - 2 * grid + 1, grid))
    xs = rng.choice(cuts)
    for x0, x1 in ((0, xs), (xs, size)):
        if rng.rand() < 0.6:
            ys = rng.choice(cuts)
            spans = ((0, ys), (ys, size))
        else:
            spans = ((0, size), )
        for y0, y1 in spans:
            c = rng.randint(n)
            img[y0:y1, x0:x1] = paint(c, y1 - y0, x1 - x0, rng)
            label[y0:y1, x0:x1] = c
    return img, label


def make_dataset(root: str, num_train: int = 240, num_val: int = 48, size: int = 64, seed: int = 0) -> None:
    """Images (JPEG) and label maps (PNG) in MMSeg's generic layout under ``root``:
    images/{train,val}/*.jpg, annotations/{train,val}/*.png, plus classes.json."""
    rng = np.random.RandomState(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        for i in range(count):
            img, label = make_sample(rng, size)
            name = f'{split}_{i:04d}'
            mmcv.imwrite(img[..., ::-1], osp.join(root, 'images', split, name + '.jpg'),
                         params=[1, 95])  # cv2.IMWRITE_JPEG_QUALITY; BGR on disk
            mmcv.imwrite(label, osp.join(root, 'annotations', split, name + '.png'))
    with open(osp.join(root, 'classes.json'), 'w') as f:
        json.dump(dict(classes=class_names(), unseen=unseen_ids()), f, indent=1)


def caption_embeddings(present: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(B, K) 0/1 class sets -> (B, D) caption embeddings: normalize(sum of the named classes'
    text embeddings), a bag-of-concepts text encoder for captions such as "red dots and blue flat"."""
    return F.normalize(present @ text, dim=-1)


def pretrain_tiny_clip(path: str, embeddings: np.ndarray, steps: int = 600, size: int = 64,
                       patch: int = 8, width: int = 64, layers: int = 12, heads: int = 4,
                       seed: int = 0, batch: int = 32, lr: float = 2e-3, mosaic_fraction: float = 0.5,
                       temperature: float = 0.07, logger=None) -> Dict[str, float]:
    """Pretrain a tiny CLIP image tower on image-caption pairs; save an OpenAI-style archive.

    Supervision is image-level and global, as CLIP's is: only the global (class-token)
    embedding is trained, contrastively against the batch's captions (which classes an image
    shows, never where). Part of each batch shows one class over the whole frame, the rest
    are mosaics of 2-4 regions whose caption names the classes present. The patch tokens are
    never supervised, so the dense embeddings are weak, as real CLIP's are. Pretraining images
    come from their own random stream, not from the segmentation dataset.

    Returns the accuracies on fresh single-class images of the global embedding and of the
    patch embeddings (``global_accuracy``, ``patch_accuracy``).
    """
    from mmcv.utils import print_log

    from cascade_clip.models.backbones import CLIPVisionTransformer
    from tools.demo_data.tiny_clip import make_tiny_clip
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed + 1)
    dim = embeddings.shape[1]
    enc = CLIPVisionTransformer(input_resolution=size, patch_size=patch, width=width, layers=layers,
                                heads=heads, output_dim=dim, out_indices=[layers - 1],
                                get_embeddings=True)
    text = torch.from_numpy(embeddings)
    n = text.shape[0]
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)

    def to_tensor(imgs):
        return (torch.from_numpy(np.stack(imgs).astype(np.float32)).permute(0, 3, 1, 2) - mean) / std

    def pairs(k):
        n_mosaic = int(round(k * mosaic_fraction))
        pics, present = [], torch.zeros(k, n)
        for i in range(k):
            if i < n_mosaic:
                img, label = make_sample(rng, size)
                present[i, torch.from_numpy(np.unique(label).astype(np.int64))] = 1
            else:
                c = rng.randint(n)
                img = paint(c, size, size, rng)
                present[i, c] = 1
            pics.append(img)
        return to_tensor(pics), present

    enc.train()
    for step in range(steps):
        x, present = pairs(batch)
        g = enc(x).global_emb
        cap = caption_embeddings(present, text)
        logits = g @ cap.t() / temperature  # (images, captions)
        # identical captions in a batch are all positives
        same = (present[:, None] == present[None]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.t().log_softmax(1), 1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if logger is not None and (step + 1) % 50 == 0:
            print_log(f'tiny CLIP pretraining step {step + 1}/{steps}: loss {loss.item():.3f}', logger)
    enc.eval()
    with torch.no_grad():
        cls = rng.randint(n, size=96)
        out = enc(to_tensor([paint(c, size, size, rng) for c in cls]))
        dense, g = out.dense, out.global_emb
        y = torch.from_numpy(cls).long()
        global_acc = ((g @ text.t()).argmax(1) == y).float().mean().item()
        pred = torch.einsum('bdhw,kd->bkhw', dense, text).argmax(1)
        patch_acc = (pred == y.view(-1, 1, 1)).float().mean().item()
    clip = make_tiny_clip(seed, embed_dim=dim, image_resolution=size, vision_patch_size=patch,
                          vision_width=width, vision_layers=layers, vision_heads=heads)
    missing, unexpected = clip.visual.load_state_dict(enc.state_dict(), strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        tmp = path + '.tmp'
        torch.jit.script(clip.eval()).save(tmp)
        os.replace(tmp, path)
    return dict(global_accuracy=global_acc, patch_accuracy=patch_acc)
