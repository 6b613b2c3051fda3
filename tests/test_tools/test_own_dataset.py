"""docs/own_dataset.md, followed literally: its files written where it says, its bash blocks run
as they are, and what it says they print found in their output, in order.

The page's folder is made in a temporary working folder laid out as a checkout: ``tools`` is
the repository's, ``clip_pretrain/ViT-B-16.pt`` a tiny CLIP, ``data/my_dataset`` 8 generated
images of 64x64 (6 train, 2 val) with their label maps, and the four ``configs/_base_`` files the
page's config inherits are the repository's own, inherited in turn by stand-ins that shrink them
to the tiny model (widths, 64-pixel pipelines) and to 2 training iterations, logged every one.
``python`` is the test's interpreter. Nothing of the page's text is changed.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import List, Tuple

import mmcv
import numpy as np
import pytest

from cascade_clip.datasets.zero_shot import harmonic_iou
from cascade_clip.utils import safe_load

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(ROOT, 'docs/own_dataset.md')
BASE = osp.join(ROOT, 'configs/_base_')

# the page's _base_ files, each inherited by a tiny stand-in of the same name
STAND_INS = {
    'models/cascade_clip_vit-b16.py': '''
model = dict(
    backbone=dict(input_resolution=64, width=64, layers=12, heads=4, output_dim=32, num_tokens=5,
                  prompt_dim=64),
    text_encoder=dict(transformer_width=32, transformer_heads=1, transformer_layers=2, embed_dim=32),
    decode_head=dict(img_size=64, in_channels=32, channels=32, embed_dims=32, num_heads=4),
    test_cfg=dict(crop_size=(64, 64), stride=(48, 48)))
''',
    'schedules/schedule_20k.py': '''
runner = dict(max_iters=2)
checkpoint_config = dict(interval=2)
evaluation = dict(interval=2)
lr_config = dict(warmup_iters=1)
''',
    'default_runtime.py': '''
log_config = dict(interval=1)
''',
}


def fenced_blocks(text: str) -> List[Tuple[str, str, str]]:
    """(language, file name or '', body) of every fenced block, in order."""
    blocks = []
    for m in re.finditer(r'^```(\w*)[ \t]*(\S*)[ \t]*\n(.*?)^```[ \t]*$', text, re.M | re.S):
        blocks.append((m.group(1), m.group(2), m.group(3)))
    return blocks


def line_pattern(line: str) -> str:
    """A regex for one line of shown output: a number stands for any number or nan (sizes,
    losses, IoUs and times differ), blanks for any blanks and a run of '-' or '>' for any run
    (table columns and progress bars take the width of their contents and of the terminal)."""
    out = []
    for part in re.split(r'(\bnan\b|\d+(?:\.\d+)?|\s+|-{3,}|>{3,})', line.strip()):
        if not part:
            continue
        if part.isspace():
            out.append(r'\s+')
        elif part == 'nan' or part[0].isdigit():
            out.append(r'(?:\d+(?:\.\d+)?|nan)')
        elif len(part) >= 3 and part[0] in '->' and part == part[0] * len(part):
            out.append(re.escape(part[0]) + '+')
        else:
            out.append(re.escape(part))
    return ''.join(out)


def check_shown_output(shown: str, output: str, command: str) -> None:
    """Every line the page shows (but '...') occurs in ``output``, in the page's order."""
    pos = 0
    for line in shown.splitlines():
        if not line.strip() or line.strip() == '...':
            continue
        m = re.compile(line_pattern(line)).search(output, pos)
        assert m is not None, (f'the page says that\n  {command.strip()}\nprints {line!r} (after what '
                               f'it shows before it), but its output is:\n{output[-6000:]}')
        pos = m.end()


def make_dataset(root: str, names: List[str]) -> None:
    """8 images of 64x64 (6 train, 2 val) with label maps of ids 0..len(names)-1 and some 255."""
    from tools.demo_data import synthetic
    rng = np.random.RandomState(0)
    for i in range(8):
        split = 'train' if i < 6 else 'val'
        img, label = synthetic.make_sample(rng, 64)
        label = label % len(names)
        label[:4, :4] = 255  # unlabelled pixels
        mmcv.imwrite(img[..., ::-1], osp.join(root, 'images', split, f'{split}_{i}.jpg'))
        mmcv.imwrite(label.astype(np.uint8), osp.join(root, 'annotations', split, f'{split}_{i}.png'))


@pytest.fixture(scope='module')
def page():
    with open(PAGE, encoding='utf-8') as f:
        return fenced_blocks(f.read())


@pytest.fixture(scope='module')
def followed(page, tiny_clip, tmp_path_factory):
    """The working folder after every command of the page, and each command's output."""
    work = tmp_path_factory.mktemp('checkout')
    os.symlink(osp.join(ROOT, 'tools'), work / 'tools')
    (work / 'clip_pretrain').mkdir()
    shutil.copy(tiny_clip[0], work / 'clip_pretrain/ViT-B-16.pt')
    for name in ('models/cascade_clip_vit-b16.py', 'datasets/pipelines_512.py', 'default_runtime.py',
                 'schedules/schedule_20k.py'):
        path = work / 'configs/_base_' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == 'datasets/pipelines_512.py':  # lists cannot be merged: the same steps at 64 px
            text = open(osp.join(BASE, name)).read()
            assert '512' in text and '2048' in text
            path.write_text(text.replace('2048', '256').replace('512', '64'))
        else:
            path.write_text(f'_base_ = {osp.join(BASE, name)!r}\n{STAND_INS[name]}')
    bin_dir = work / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / 'python').chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', PYTHONPATH=ROOT, OMP_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    runs = []  # [command, its output, what the page shows it prints (the next block) or None]
    for i, (lang, name, body) in enumerate(page):
        if name:  # a file the page says to write
            assert not (work / name).exists(), name
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(body)
            if name == 'data/my_dataset/classes.txt':
                make_dataset(str(work / 'data/my_dataset'), body.split())
        elif lang == 'bash':
            r = subprocess.run(['bash', '-euo', 'pipefail', '-c', body], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
            assert r.returncode == 0, f'{body}\nfailed ({r.returncode}):\n{r.stdout[-6000:]}'
            runs.append([body, r.stdout, None])
        elif lang == 'text' and i and page[i - 1][0] == 'bash':
            runs[-1][2] = body
    return work, runs


def test_the_page_has_what_the_test_follows(page):
    names = [name for _, name, _ in page if name]
    assert names == ['data/my_dataset/classes.txt', 'configs/my_dataset/cascade_clip_my_dataset.py']
    commands = [body.split()[1] for lang, _, body in page if lang == 'bash']
    assert commands == ['tools/build_text_embeddings.py', 'tools/train.py', 'tools/test.py',
                        'tools/demo.py', 'tools/demo.py']
    config = [body for _, name, body in page if name.endswith('.py')][0]
    for key in ("type='ZeroShotDataset'", 'classes=classes', 'unseen_classes=novel_class',
                'base_class=base_class', 'novel_class=novel_class', 'both_class=both_class',
                'load_text_embedding='):
        assert config.count(key) == 1, key  # the split defined once, used by dataset and model


def test_every_command_prints_what_the_page_says(followed):
    _, runs = followed
    for command, output, shown in runs:
        assert shown is not None, f'the page does not say what this prints:\n{command}'
        check_shown_output(shown, output, command)


def test_the_commands_make_what_the_page_says(followed):
    work, _ = followed
    names = ['grass', 'tree', 'sky', 'road', 'car']
    emb = np.load(work / 'data/my_dataset/text_embeddings.npy')
    assert emb.shape == (5, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    ckpt = safe_load(str(work / 'work_dirs/my_dataset/latest.pth'))
    assert list(ckpt['meta']['CLASSES']) == names and ckpt['meta']['iter'] == 2
    evals = sorted((work / 'work_dirs/my_dataset').glob('eval_*.json'))
    metric = json.loads(evals[-1].read_text())['metric']
    # the split of the page: 'car' (id 4) unseen, the others seen
    seen = np.nanmean([metric[f'IoU.{n}'] for n in names[:4]])
    assert metric['mIoU_seen'] == pytest.approx(seen, nan_ok=True)
    assert metric['mIoU_unseen'] == pytest.approx(metric['IoU.car'], nan_ok=True)
    assert metric['hIoU'] == pytest.approx(harmonic_iou(seen, metric['IoU.car']), nan_ok=True)
    for folder, k in (('label_maps', 5), ('overlays', None), ('overlays_person', None)):
        files = sorted(p.name for p in (work / 'work_dirs/my_dataset' / folder).iterdir())
        assert files == ['val_6.png', 'val_7.png'], folder
        if k is not None:
            for f in files:
                labels = mmcv.imread(str(work / 'work_dirs/my_dataset' / folder / f), flag='unchanged')
                assert labels.shape == (64, 64) and labels.max() < k


def test_shown_output_is_matched_line_by_line_in_order():
    output = ('x - INFO - wrote a.npy: 5 classes x 512\n+--------+------+\n|  car  | 6.08 |\n'
              '|  sky  | nan  |\n[>>>>>>>>>>] 2/2, 31.4 task/s\n')
    check_shown_output('wrote a.npy: 6 classes x 32\n...\n+----+----+\n| car | 0.00 |\n| sky | 1.5 |\n'
                       '[>>>] 2/2, 8.0 task/s', output, 'cmd')
    for wrong in ('wrote b.npy: 5 classes x 512', '| cat | 6.08 |', '| sky | nan |\n| car | 6.08 |'):
        with pytest.raises(AssertionError, match='the page says that'):
            check_shown_output(wrong, output, 'cmd')
