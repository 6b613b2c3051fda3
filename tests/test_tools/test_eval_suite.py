"""tools/eval_suite.py: the open-vocabulary row for a tiny checkpoint on two tiny datasets in the
real layouts (ADE20K-847, VOC-21), the others reported missing with the reason."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN_CONFIG = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')


@pytest.fixture(scope='module')
def suite_run(tmp_path_factory):
    from mmcv import Config
    from mmseg.models import build_segmentor
    import cascade_clip  # noqa: F401
    tmp = tmp_path_factory.mktemp('suite')
    rng = np.random.RandomState(0)
    # datasets/ in the real layouts
    ade = tmp / 'datasets/ADE20K_2021_17_01'
    for i in range(2):
        mmcv.imwrite(rng.randint(0, 255, (16, 24, 3)).astype(np.uint8),
                     str(ade / f'images_detectron2/validation/ADE_val_{i:08d}.jpg'))
        lab = rng.randint(0, 847, (16, 24)).astype(np.uint16)
        lab[:2] = 65535
        (ade / 'annotations_detectron2/validation').mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(ade / f'annotations_detectron2/validation/ADE_val_{i:08d}.tif')
    voc = tmp / 'datasets/VOCdevkit/VOC2012'
    names = ['2007_000033', '2007_000042', '2007_000061']
    for n in names:
        mmcv.imwrite(rng.randint(0, 255, (16, 24, 3)).astype(np.uint8), str(voc / f'JPEGImages/{n}.jpg'))
        mmcv.imwrite(rng.randint(0, 21, (16, 24)).astype(np.uint8), str(voc / f'SegmentationClass/{n}.png'))
    (voc / 'ImageSets/Segmentation').mkdir(parents=True)
    (voc / 'ImageSets/Segmentation/val.txt').write_text('\n'.join(names) + '\n')
    emb = tmp / 'text_embeddings'
    emb.mkdir()
    for f, n in (('ade847_multi.npy', 847), ('voc21_multi.npy', 21)):
        e = rng.randn(n, 32).astype(np.float32)
        np.save(emb / f, e / np.linalg.norm(e, axis=1, keepdims=True))
    # a tiny checkpoint of the demo structure (random weights)
    cfg = Config.fromfile(TRAIN_CONFIG)
    cfg.model.pretrained = None
    np.save(tmp / 'demo_emb.npy', np.load(emb / 'voc21_multi.npy')[:12])
    cfg.model.load_text_embedding = str(tmp / 'demo_emb.npy')
    torch.manual_seed(0)
    model = build_segmentor(cfg.model)
    model.init_weights()
    ckpt = str(tmp / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(CLASSES=list(cfg.classes))), ckpt)
    work = str(tmp / 'work')
    cmd = [sys.executable, 'tools/eval_suite.py', ckpt, '--train-config', TRAIN_CONFIG,
           '--work-dir', work, '--data-dir', str(tmp / 'datasets'), '--embedding-dir', str(emb),
           '--cfg-options', 'model.test_cfg.mode=slide', 'model.test_cfg.crop_size=(64,64)',
           'model.test_cfg.stride=(64,64)', 'data.workers_per_gpu=0', 'data.persistent_workers=False',
           # 64 px inputs instead of the protocol's 512 px shorter side (speed)
           'data.test.pipeline.1.img_scale=(64,64)', 'data.test.pipeline.1.transforms.0.min_size=None']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work, ckpt, proc.stdout + proc.stderr, cmd, env


def test_suite_prints_the_row_and_reports_what_is_missing(suite_run):
    work, ckpt, out, _, _ = suite_run
    rows = {r['name']: r for r in json.load(open(osp.join(work, 'suite.json')))['rows']}
    assert [n for n, r in rows.items() if r['status'] == 'done'] == ['ade847', 'voc21']
    # each figure is the one tools/test.py wrote for that dataset
    for name, n, images in (('ade847', 847, 2), ('voc21', 21, 3)):
        metric = json.load(open(sorted(glob.glob(osp.join(work, name, 'eval_*.json')))[-1]))['metric']
        assert rows[name]['mIoU'] == metric['mIoU'] and 0 <= metric['mIoU'] <= 1
        assert (rows[name]['classes'], rows[name]['images']) == (n, images)
    table = open(osp.join(work, 'suite.md')).read()
    assert f'| ADE20K-847 | 847 | 2 | {100 * rows["ade847"]["mIoU"]:.1f} |' in table
    assert f'| Pascal VOC-21 (VOC-20b) | 21 | 3 | {100 * rows["voc21"]["mIoU"]:.1f} |' in table
    assert table in out  # printed as well
    # missing data, named; VOC-20's images exist but its text embeddings do not
    assert rows['pc459']['reason'].startswith('data: ')
    assert 'data root not found: ' in rows['pc459']['reason'] and 'VOC2010' in rows['pc459']['reason']
    assert 'text embeddings not found: ' in rows['voc20']['reason']
    assert '--dataset voc20 --template single' in rows['voc20']['reason']
    assert '| Pascal Context-459 | 459 | — | missing |' in table
    assert '- Pascal Context-459: missing: data: ' in table


def test_suite_rerun_reuses_finished_results(suite_run):
    work, ckpt, _, cmd, env = suite_run
    before = sorted(glob.glob(osp.join(work, '*', 'eval_*.json')))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0
    assert 'ADE20K-847: results of this checkpoint, config and images already in' in proc.stdout + proc.stderr
    assert sorted(glob.glob(osp.join(work, '*', 'eval_*.json'))) == before


def test_zero_shot_suite_asks_for_per_setting_checkpoints(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/eval_suite.py', 'voc20=' + str(tmp_path / 'x.pth'),
                           '--suite', 'zero-shot', '--work-dir', str(tmp_path / 'w'),
                           '--data-dir', str(tmp_path / 'nodata')],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr
    rows = {r['name']: r for r in json.load(open(tmp_path / 'w/suite.json'))['rows']}
    assert list(rows) == ['coco', 'voc20', 'pc59', 'pc60']
    assert all(r['status'] == 'missing' and r['reason'].startswith('data: ') for r in rows.values())
    assert (rows['coco']['classes'], rows['pc60']['classes']) == (171, 60)


def suite_argv(suite_run, checkpoint, data_dir, *options):
    """eval_suite's arguments for ``checkpoint`` with the fixture's options (relative paths
    stay relative: the command runs from another folder)."""
    _, ckpt, _, cmd, _ = suite_run
    base = osp.dirname(ckpt)
    return [checkpoint, '--train-config', TRAIN_CONFIG, '--work-dir', 'runs', '--data-dir', data_dir,
            '--embedding-dir', osp.join(base, 'text_embeddings'), '--cfg-options',
            *cmd[cmd.index('--cfg-options') + 1:], *options]


def voc21(work):
    rows = {r['name']: r for r in json.load(open(osp.join(work, 'suite.json')))['rows']}
    return rows['voc21']


def test_results_are_keyed_by_checkpoint_content_config_and_images(suite_run, tmp_path, monkeypatch,
                                                                   caplog):
    """From another folder with a relative --work-dir: results land there; a rerun reuses a
    result only for the same checkpoint content, resolved config and images."""
    from tools import eval_suite
    _, ckpt, _, _, _ = suite_run
    data = tmp_path / 'data'  # VOC only: one dataset runs
    data.mkdir()
    os.symlink(osp.join(osp.dirname(ckpt), 'datasets', 'VOCdevkit'), data / 'VOCdevkit')
    here = tmp_path / 'elsewhere'
    here.mkdir()
    monkeypatch.chdir(here)
    torch.save(torch.load(ckpt), 'latest.pth')
    argv = suite_argv(suite_run, 'latest.pth', '../data')
    out = here / 'runs' / 'voc21'

    def evals():
        return sorted(glob.glob(str(out / 'eval_*.json')))

    eval_suite.main(argv)
    assert voc21(here / 'runs')['status'] == 'done' and len(evals()) == 1
    assert not osp.exists(osp.join(ROOT, 'runs'))  # nothing inside the checkout
    first = json.load(open(evals()[0]))
    assert voc21(here / 'runs')['mIoU'] == first['metric']['mIoU'] and first['images'] == 3
    # a run on two of the three images (another split): its own result
    split = tmp_path / 'two.txt'
    split.write_text('2007_000033\n2007_000042\n')
    eval_suite.main(argv + [f'data.test.split={split}'])
    assert len(evals()) == 2 and voc21(here / 'runs')['images'] == 2
    # all images again: the first result is reused, not the newer one of the subset
    eval_suite.main(argv)
    assert len(evals()) == 2 and voc21(here / 'runs')['mIoU'] == first['metric']['mIoU']
    # latest.pth now holds another checkpoint: run again, the new numbers reported
    state = torch.load('latest.pth')
    torch.manual_seed(1)
    state['state_dict'] = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v
                           for k, v in state['state_dict'].items()}
    torch.save(state, 'latest.pth')
    eval_suite.main(argv)
    assert len(evals()) == 3
    new = [d for d in (json.load(open(f)) for f in evals())
           if d['checkpoint_sha256'] != first['checkpoint_sha256']]
    assert len(new) == 1 and voc21(here / 'runs')['mIoU'] == new[0]['metric']['mIoU']
    # an empty eval json (a run cut off) is skipped with a warning naming it
    empty = out / 'eval_29991231_235959_1.json'
    empty.write_text('')
    with caplog.at_level('WARNING'):
        eval_suite.main(argv)
    assert f'skipped {empty}: not a readable evaluation result' in caplog.text
    assert len(evals()) == 4 and voc21(here / 'runs')['mIoU'] == new[0]['metric']['mIoU']


def test_a_failed_dataset_is_a_nonzero_exit(suite_run, tmp_path, monkeypatch):
    from tools import eval_suite
    _, ckpt, _, _, _ = suite_run
    data = tmp_path / 'data'
    data.mkdir()
    os.symlink(osp.join(osp.dirname(ckpt), 'datasets', 'VOCdevkit'), data / 'VOCdevkit')
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'notes.pth').write_text('not weights')
    with pytest.raises(SystemExit, match=r'^error: the test of Pascal VOC-21 \(VOC-20b\) failed'):
        eval_suite.main(suite_argv(suite_run, 'notes.pth', 'data'))
    row = voc21(tmp_path / 'runs')
    assert row['status'] == 'failed' and 'tools/test.py exit code 1' in row['reason']
