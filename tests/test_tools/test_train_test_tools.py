"""End-to-end runs of tools/train.py, tools/test.py, dist_train.sh and dist_test.sh on a tiny
synthetic dataset and a tiny random CLIP (CPU; 2 processes with Gloo for the dist scripts)."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from cascade_clip.utils import safe_load

from tests.tiny import write_demo_data
from tests.tool_runner import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
PY = sys.executable


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return write_demo_data(str(tmp_path_factory.mktemp('demo')), num_train=16, num_val=4)


def options(root, iters=2, interval=2):
    opts = [f'model.pretrained={root}/tiny_clip.pt',
            f'model.load_text_embedding={root}/text_embeddings.npy',
            f'runner.max_iters={iters}', f'checkpoint_config.interval={interval}',
            f'evaluation.interval={interval}', 'log_config.interval=1', 'data.samples_per_gpu=2',
            'lr_config.warmup_iters=1']
    opts += [f'data.{s}.data_root={root}' for s in ('train', 'val', 'test')]
    return opts


def run(cmd, env_extra=None, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHON=PY)
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc.stdout + proc.stderr


def run_here(script, *args):
    """``tools/<script>.py args`` in this process (tests/tool_runner.py): its output, or an
    AssertionError with it when the tool fails."""
    r = run_tool(script, *args)
    if r.returncode != 0:
        raise AssertionError(f'{script} failed ({r.returncode}):\n{r.stderr[-6000:]}')
    return r.stderr


def latest_eval(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, 'eval_*.json')))
    assert files, f'no eval json in {work_dir}'
    return json.load(open(files[-1]))['metric']


@pytest.fixture(scope='module')
def dist_trained(demo_data, tmp_path_factory):
    """2-process CPU training through dist_train.sh (Gloo), 2 iterations."""
    work = str(tmp_path_factory.mktemp('work'))
    # a folder of the user's named as the evaluation's tmpdir: MMSeg's DistEvalHook would
    # collect through pickle files in it and delete it afterwards
    user_dir = tmp_path_factory.mktemp('user_tmpdir')
    (user_dir / 'notes.txt').write_text('keep me')
    # evaluated after iterations 1 and 2
    out = run(['bash', 'dist_train.sh', CONFIG, '2', work, '--seed', '0', '--cfg-options',
               *options(demo_data), 'evaluation.interval=1', f'evaluation.tmpdir={user_dir}'],
              env_extra={'PORT': '29611'})
    assert (user_dir / 'notes.txt').read_text() == 'keep me'
    assert os.listdir(user_dir) == ['notes.txt']  # nothing written there either
    assert not osp.exists(osp.join(work, '.eval_hook'))
    return work, out


def test_dist_train_two_cpu_processes(dist_trained):
    work, out = dist_trained
    assert osp.isfile(osp.join(work, 'iter_2.pth')) and osp.islink(osp.join(work, 'latest.pth'))
    assert 'Distributed training: True (world size 2, device cpu)' in out
    assert 'mIoU_unseen' in out and 'hIoU' in out  # evaluation hook with the dist test loop
    # logged at the iterations evaluated (MMSeg's hook logs rank 0's 2 validation batches there)
    (log,) = glob.glob(osp.join(work, '*.log.json'))
    assert [json.loads(line)['iter'] for line in open(log) if '"mode": "val"' in line] == [1, 2]
    ckpt = safe_load(osp.join(work, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    assert ckpt['meta']['CLASSES'][0] == 'red flat'
    assert not any(k.endswith(('label_map', 'text_embeddings')) for k in ckpt['state_dict'])
    assert not glob.glob(osp.join(work, '*.tmp-*'))  # atomic writes leave nothing behind


def test_dist_test_matches_single_process_test(dist_trained, demo_data, tmp_path):
    work, _ = dist_trained
    ckpt = osp.join(work, 'iter_2.pth')
    single, dist_dir = str(tmp_path / 'single'), str(tmp_path / 'dist')
    show, dist_show = str(tmp_path / 'show'), str(tmp_path / 'dist_show')
    run([PY, 'tools/test.py', CONFIG, ckpt, '--eval=mIoU', '--work-dir', single, '--show-dir', show,
         '--cfg-options', *options(demo_data)])
    # a folder of the user's given as --tmpdir, and a link planted where results were once
    # collected (WORK_DIR/.dist_test): the one is kept as it is, the other never followed
    mine, victim = tmp_path / 'mine', tmp_path / 'victim'
    mine.mkdir(), victim.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    os.makedirs(dist_dir)
    os.symlink(victim, osp.join(dist_dir, '.dist_test'))
    run(['bash', 'dist_test.sh', CONFIG, ckpt, '2', '--eval', 'mIoU', '--work-dir', dist_dir,
         '--show-dir', dist_show, '--tmpdir', str(mine), '--cfg-options', *options(demo_data)],
        env_extra={'PORT': '29612'})
    assert os.listdir(mine) == ['notes.txt'] and (mine / 'notes.txt').read_text() == 'keep me'
    assert os.listdir(victim) == [] and osp.islink(osp.join(dist_dir, '.dist_test'))
    a, b = latest_eval(single), latest_eval(dist_dir)
    for k in ('aAcc', 'mIoU', 'mIoU_seen', 'mIoU_unseen', 'hIoU', 'IoU.red flat'):
        assert a[k] == pytest.approx(b[k], abs=1e-9) or (np.isnan(a[k]) and np.isnan(b[k])), k
    overlays = sorted(glob.glob(osp.join(show, '*.jpg')))
    assert len(overlays) == 4
    import mmcv
    im = mmcv.imread(overlays[0])
    assert im.shape[0] >= 64 and im.shape[1] > 64  # overlay plus legend panel
    # two processes draw every image too (each its share), the same pictures
    dist_overlays = sorted(glob.glob(osp.join(dist_show, '*.jpg')))
    assert [osp.basename(f) for f in dist_overlays] == [osp.basename(f) for f in overlays]
    for x, y in zip(overlays, dist_overlays):
        assert np.array_equal(mmcv.imread(x), mmcv.imread(y)), y


def test_dist_test_results_in_order_and_no_files(dist_trained, demo_data, tmp_path):
    """The per-image results of 2 processes are the single process's, in the same order;
    nothing is written through a link planted at the old shared default ($TMPDIR/.dist_test)."""
    import pickle
    work, _ = dist_trained
    ckpt = osp.join(work, 'iter_2.pth')
    tmp, victim = tmp_path / 'tmp', tmp_path / 'victim'
    tmp.mkdir(), victim.mkdir()
    os.symlink(victim, tmp / '.dist_test')
    single, dist = str(tmp_path / 'single.pkl'), str(tmp_path / 'dist.pkl')
    run([PY, 'tools/test.py', CONFIG, ckpt, '--out', single, '--cfg-options', *options(demo_data)])
    run(['bash', 'dist_test.sh', CONFIG, ckpt, '2', '--out', dist, '--cfg-options', *options(demo_data)],
        env_extra={'PORT': '29615', 'TMPDIR': str(tmp)})
    with open(single, 'rb') as f:  # written by the runs above, not from outside
        a = pickle.load(f)
    with open(dist, 'rb') as f:
        b = pickle.load(f)
    assert len(a) == len(b) == 4  # one label map per image, the sampler's padding cut off
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == (64, 64) and np.array_equal(x, y), i
    assert len({x.tobytes() for x in a}) == 4  # distinct images: a wrong order would show
    assert os.listdir(victim) == []


def test_format_only_and_aug_test(dist_trained, demo_data, tmp_path):
    work, _ = dist_trained
    ckpt = osp.join(work, 'iter_2.pth')
    out = str(tmp_path / 'fmt')
    run_here('test', CONFIG, ckpt, '--format-only', '--work-dir', out, '--cfg-options', *options(demo_data))
    pngs = sorted(glob.glob(osp.join(out, 'format_results', '*.png')))
    assert [osp.basename(p) for p in pngs] == [f'val_{i:04d}.png' for i in range(4)]
    import mmcv
    assert mmcv.imread(pngs[0], flag='unchanged').shape == (64, 64)
    aug = str(tmp_path / 'aug')
    run_here('test', CONFIG, ckpt, '--aug-test', '--eval', 'mIoU', '--work-dir', aug,
             '--out', str(tmp_path / 'res.pkl'), '--cfg-options', *options(demo_data))
    m = latest_eval(aug)
    assert 0 <= m['mIoU'] <= 1 and 'hIoU' in m
    assert osp.isfile(tmp_path / 'res.pkl')


def test_resume_continues_from_saved_iteration(dist_trained, demo_data, tmp_path):
    work, _ = dist_trained
    resumed = str(tmp_path / 'resumed')
    # trained by 2 processes, resumed by 1: another data order, so only when asked for
    with pytest.raises(AssertionError, match=r'the batch layout differs \(world_size 2 -> 1;'):
        run([PY, 'tools/train.py', CONFIG, '--work-dir', resumed, '--resume-from',
             osp.join(work, 'iter_2.pth'), '--no-validate', '--cfg-options',
             *options(demo_data, iters=4, interval=4)])
    out = run([PY, 'tools/train.py', CONFIG, '--work-dir', resumed, '--resume-from',
               osp.join(work, 'iter_2.pth'), '--no-validate', '--resume-any-batch', '--cfg-options',
               *options(demo_data, iters=4, interval=4)])
    assert 'with another batch layout (world_size 2 -> 1) as asked' in out
    assert 'resumed from epoch: 1, iter 2' in out
    assert 'Iter [3/4]' in out and 'Iter [1/4]' not in out
    ckpt = safe_load(osp.join(resumed, 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4


def test_fp16_training_uses_loss_scaling(demo_data, tmp_path):
    # MMSeg's switch (cfg.fp16) is translated onto the one precision key, model.amp_dtype
    out = run_here('train', CONFIG, '--work-dir', str(tmp_path / 'fp16'), '--no-validate',
                   '--cfg-options', *options(demo_data), 'fp16.loss_scale=512.')
    assert re.search(r"amp_dtype='fp16'", out) and 'fp16 = dict' not in out
    assert '(ABOVE_NORMAL) LossScaleOptimizerHook' in out
    ckpt = safe_load(osp.join(tmp_path, 'fp16', 'iter_2.pth'))
    # the static scale asked for, kept where MMCV's Fp16OptimizerHook keeps it
    assert ckpt['meta']['fp16']['loss_scaler']['scale'] == 512.


def test_missing_clip_and_embedding_files_are_clear_errors(demo_data, tmp_path):
    opts = options(demo_data)
    bad = [o for o in opts if not o.startswith('model.pretrained')] + [f'model.pretrained={tmp_path}/ViT-B-16.pt']
    with pytest.raises(AssertionError, match=r'CLIP checkpoint not found: .*ViT-B-16.pt'):
        run_here('train', CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *bad)
    bad = [o for o in opts if not o.startswith('model.load_text')] + [f'model.load_text_embedding={tmp_path}/x.npy']
    with pytest.raises(AssertionError, match=r'text embedding file not found: .*x.npy; make it with'):
        run_here('train', CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *bad)


def params_of(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def assert_bit_identical(path_a, path_b):
    a, b = params_of(path_a), params_of(path_b)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:3]}'


@pytest.fixture(scope='module')
def straight_run(demo_data, tmp_path_factory):
    """4 iterations without interruption (checkpoints at 2 and 4, evaluation at 2 and 4)."""
    work = str(tmp_path_factory.mktemp('straight'))
    run([PY, 'tools/train.py', CONFIG, '--work-dir', work, '--seed', '0', '--deterministic',
         '--cfg-options', *options(demo_data, iters=4, interval=2)])
    return work


def test_resume_is_bit_identical_to_an_uninterrupted_run(straight_run, demo_data, tmp_path):
    # the checkpoint's meta (random states, data position) loads without any allow-list
    meta = torch.load(osp.join(straight_run, 'iter_2.pth'), map_location='cpu', weights_only=True)['meta']
    state = meta['train_state']
    assert meta['iter'] == 2 and state['world_size'] == 1 and len(state['ranks']) == 1
    assert state['ranks'][0]['loaders'][0]['consumed'] == 2  # 16 images, batch 2: epoch 0, 2 batches
    resumed = str(tmp_path / 'resumed')
    out = run([PY, 'tools/train.py', CONFIG, '--work-dir', resumed, '--seed', '0', '--deterministic',
               '--resume-from', osp.join(straight_run, 'iter_2.pth'), '--cfg-options',
               *options(demo_data, iters=4, interval=2)])
    assert 'replaying the 2 batch(es) already used in it' in out
    assert 'Iter [3/4]' in out and 'Iter [1/4]' not in out
    assert_bit_identical(osp.join(straight_run, 'iter_4.pth'), osp.join(resumed, 'iter_4.pth'))


def test_dist_resume_is_bit_identical(demo_data, tmp_path):
    """2 CPU processes: every rank's random states and data position are in rank 0's checkpoint."""
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    # --diff-seed: each rank has its own random streams, so each needs its own saved state
    opts = ['--seed', '0', '--diff-seed', '--deterministic', '--no-validate', '--cfg-options',
            *options(demo_data, iters=4, interval=2)]
    run(['bash', 'dist_train.sh', CONFIG, '2', straight, *opts], env_extra={'PORT': '29613'})
    state = torch.load(osp.join(straight, 'iter_2.pth'), map_location='cpu', weights_only=True)['meta']['train_state']
    assert state['world_size'] == 2 and len(state['ranks']) == 2
    assert not torch.equal(state['ranks'][0]['random']['torch'], state['ranks'][1]['random']['torch'])
    run(['bash', 'dist_train.sh', CONFIG, '2', resumed, '--resume-from', osp.join(straight, 'iter_2.pth'), *opts],
        env_extra={'PORT': '29614'})
    assert_bit_identical(osp.join(straight, 'iter_4.pth'), osp.join(resumed, 'iter_4.pth'))


def test_non_finite_loss_stops_before_any_checkpoint_and_stale_temp_files_go(straight_run, demo_data, tmp_path):
    import shutil
    work = tmp_path / 'nan'
    work.mkdir()
    good = work / 'iter_2.pth'
    shutil.copy(osp.join(straight_run, 'iter_2.pth'), good)
    before = good.read_bytes()
    # a temporary file of an interrupted save whose process is gone (pids never exceed
    # pid_max), and one of a live process (this one), which must be kept
    pid_max = int(open('/proc/sys/kernel/pid_max').read())
    stale, live = work / f'.iter_3.tmp-{pid_max + 1}.pth', work / f'.iter_5.tmp-{os.getpid()}.pth'
    stale.write_bytes(b'partial')
    live.write_bytes(b'partial')
    cmd = [PY, 'tools/train.py', CONFIG, '--work-dir', str(work), '--seed', '0', '--resume-from', str(good),
           '--no-validate', '--cfg-options', *options(demo_data, iters=4, interval=1),
           'model.decode_head.loss_decode.mask_weight=nan']
    with pytest.raises(AssertionError) as info:
        run(cmd)
    message = str(info.value)
    assert 'FloatingPointError: decode.loss_mask is nan at iteration 3' in message
    assert 'loss=nan' in message and 'decode.loss_dice=' in message
    assert f'removed temporary file(s) of interrupted saves: {stale}' in message
    assert not stale.exists() and live.exists()
    assert good.read_bytes() == before
    assert sorted(p.name for p in work.glob('*.pth')) == sorted(['iter_2.pth', live.name])
    # train_segmentor runs the check before the optimizer step
    log = open(glob.glob(str(work / '*.log'))[0]).read()
    assert re.search(r'after_train_iter:\n\(HIGH +\) NonFiniteLossHook +\n\(ABOVE_NORMAL\) OptimizerHook', log)


def test_batch_larger_than_the_training_set_is_a_clear_error(demo_data, tmp_path):
    with pytest.raises(AssertionError) as info:
        run_here('train', CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                 *options(demo_data), 'data.samples_per_gpu=32')
    message = str(info.value)
    assert ('ValueError: the training set (ZeroShotDataset, 16 images) is smaller than one batch: '
            'data.samples_per_gpu=32 x 1 process(es) = 32 images per step') in message
    assert 'data.samples_per_gpu=16' in message
    assert 'StopIteration' not in message


def test_total_batch_accumulates_micro_batches_and_schedule_counts_steps(demo_data, tmp_path):
    work = str(tmp_path / 'acc')
    out = run_here('train', CONFIG, '--work-dir', work, '--no-validate', '--total-batch', '4',
                   '--cfg-options', *options(demo_data), 'data.samples_per_gpu=1')
    assert 'gradient accumulation: 4 micro-batches of 1 image(s) per GPU' in out
    assert '(ABOVE_NORMAL) GradientCumulativeOptimizerHook' in out
    assert 'Iter [2/2]' in out
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu', weights_only=True)
    # one runner iteration = one optimizer step: AdamW stepped twice in 2 iterations
    steps = {float(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert steps == {2.0}


def test_total_batch_arithmetic():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        from train import set_total_batch
    finally:
        sys.path.pop(0)
    from mmcv.utils import Config
    cfg = Config(dict(data=dict(samples_per_gpu=4), optimizer_config=dict(grad_clip=None)))
    assert set_total_batch(cfg, 16, 1) == 4
    assert cfg.optimizer_config == dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4,
                                        grad_clip=None)
    assert set_total_batch(cfg, 16, 2) == 2 and cfg.optimizer_config.cumulative_iters == 2
    assert set_total_batch(cfg, 16, 4) == 1
    with pytest.raises(ValueError, match='not a multiple'):
        set_total_batch(cfg, 12, 2)


def test_a_killed_rank_stops_the_run(demo_data, tmp_path):
    """One of two processes dies (SIGKILL) at iteration 2: the run stops with an error, and
    no checkpoint after the last good one is written. Rank 0 is 3 s late writing iteration
    1's checkpoint: rank 1 waits for it (SyncedCheckpointHook) before going on, so torchrun's
    stop of rank 0 cannot interrupt that write."""
    cfg = tmp_path / 'kill.py'
    cfg.write_text(f"_base_ = [{CONFIG!r}]\n"
                   "custom_imports = dict(imports=['cascade_clip', 'tests.test_tools.kill_rank_hook'], "
                   "allow_failed_imports=False)\n"
                   "custom_hooks = [dict(type='KillRankHook', rank=1, at_iter=2),\n"
                   "                dict(type='SlowRank0Hook', at_iter=1, seconds=3, priority='ABOVE_NORMAL')]\n")
    work = str(tmp_path / 'work')
    with pytest.raises(AssertionError) as info:
        run(['bash', 'dist_train.sh', str(cfg), '2', work, '--no-validate', '--cfg-options',
             *options(demo_data, iters=4, interval=1)], env_extra={'PORT': '29615'}, timeout=300)
    assert 'failed' in str(info.value)
    assert osp.isfile(osp.join(work, 'iter_1.pth'))
    assert not glob.glob(osp.join(work, 'iter_[234].pth'))
    assert not glob.glob(osp.join(work, '*.tmp-*'))  # rank 0, stopped by torchrun, left no temporary file


@pytest.fixture(scope='module')
def tensorboard_run(demo_data, tmp_path_factory):
    """4 iterations of the TensorBoard example config, every iteration logged, evaluations after
    iterations 2 and 4 (on 4 validation images: MMSeg's hooks would log 'iter' 4 for both).
    Returns the work dir, its json log and that log's training and validation lines."""
    work = str(tmp_path_factory.mktemp('tensorboard'))
    run([PY, 'tools/train.py', osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic_tensorboard.py'),
         '--work-dir', work, '--seed', '0', '--cfg-options', *options(demo_data, iters=4, interval=2)])
    (log,) = glob.glob(osp.join(work, '*.log.json'))
    records = [json.loads(line) for line in open(log).read().splitlines()[1:]]  # after the run's meta
    return (work, log, [r for r in records if r['mode'] == 'train'],
            [r for r in records if r['mode'] == 'val'])


def test_tensorboard_hook_writes_the_logged_scalars(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    work, _, train, val = tensorboard_run
    assert len(glob.glob(osp.join(work, 'tf_logs', 'events.out.tfevents.*'))) == 1
    events = EventAccumulator(osp.join(work, 'tf_logs'))
    events.Reload()
    assert [r['iter'] for r in train] == [1, 2, 3, 4]
    assert [r['iter'] for r in val] == [2, 4]  # the iterations evaluated, in the json log too
    for tag, lines, key in (('train/loss', train, 'loss'), ('train/decode.loss_mask', train, 'decode.loss_mask'),
                            ('val/mIoU', val, 'mIoU'), ('val/mIoU_unseen', val, 'mIoU_unseen'),
                            ('val/hIoU', val, 'hIoU')):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r['iter'] for r in lines], tag
        # float32 in the event file, 5 decimals in the json log
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in lines], rel=1e-6, abs=1e-5), tag


def test_analyze_logs_on_the_log_of_a_real_training(tensorboard_run, tmp_path, capsys):
    from tools import analyze_logs
    _, log, train, val = tensorboard_run
    out = tmp_path / 'curves.png'
    fig = analyze_logs.main([log, '--keys', 'loss', 'mIoU', 'hIoU', '--out', str(out)])
    assert out.read_bytes().startswith(b'\x89PNG\r\n\x1a\n')
    loss, miou, hiou = fig.axes
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(loss.lines[0].get_ydata()) == [r['loss'] for r in train]
    assert list(miou.lines[0].get_xdata()) == [2, 4] == list(hiou.lines[0].get_xdata())
    assert list(miou.lines[0].get_ydata()) == [r['mIoU'] for r in val]
    times = [r['time'] for r in train[1:]]
    row = next(line for line in capsys.readouterr().out.splitlines() if log in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == f'{sum(times) / 3:.4f}' and cells[4] == '3'
    assert cells[2] == f'{max(times):.4f} ({2 + times.index(max(times))})'
