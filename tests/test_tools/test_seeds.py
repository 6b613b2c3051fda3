"""tools/seeds.py: the aggregation against hand-computed values, and the orchestration (commands,
per-seed folders, resuming, seeds.json) with a stubbed runner instead of real training."""
import glob
import json
import logging
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import seeds  # noqa: E402
from tests.tiny import write_demo_data  # noqa: E402


def test_aggregate_mean_and_sample_std_by_hand():
    rows = [dict(seed=0, mIoU_seen=0.40, mIoU_unseen=0.20, hIoU=0.30),
            dict(seed=1, mIoU_seen=0.50, mIoU_unseen=0.30, hIoU=0.35),
            dict(seed=2, mIoU_seen=0.60, mIoU_unseen=0.10, hIoU=0.25)]
    s = seeds.aggregate(rows)
    # seen: mean 0.5, deviations -0.1, 0, 0.1 -> var (0.01 + 0 + 0.01) / 2 = 0.01 -> std 0.1
    assert s['mIoU_seen']['mean'] == pytest.approx(0.5) and s['mIoU_seen']['std'] == pytest.approx(0.1)
    # unseen: mean 0.2, same spread -> std 0.1; hIoU: mean 0.3, deviations 0, 0.05, -0.05 -> std 0.05
    assert s['mIoU_unseen']['mean'] == pytest.approx(0.2) and s['mIoU_unseen']['std'] == pytest.approx(0.1)
    assert s['hIoU']['mean'] == pytest.approx(0.3) and s['hIoU']['std'] == pytest.approx(0.05)
    assert s['hIoU']['n'] == 3
    assert 'mIoU' not in s and 'aAcc' not in s  # keys missing from the rows are left out
    one = seeds.aggregate([dict(seed=0, mIoU=0.25)])
    assert one['mIoU'] == dict(mean=0.25, std=0.0, n=1)
    table = seeds.format_table(rows, s)
    assert '50.00 ± 10.00' in table and '30.00 ± 5.00' in table and '60.00' in table
    single = seeds.format_table([dict(seed=0, mIoU=0.25)], one, keys=('mIoU',))
    assert '25.00' in single and '±' not in single  # no spread from one seed


def fake_runner(calls, metrics_by_seed):
    def run(cmd, log_file, env):
        calls.append(cmd)
        if osp.basename(cmd[1]) in ('test.py', 'dist_test.sh'):
            work = cmd[cmd.index('--work-dir') + 1]
            seed = int(osp.basename(work).split('_')[1])
            with open(osp.join(work, 'eval_20240101_000000.json'), 'w') as f:
                json.dump(dict(config='c', metric=metrics_by_seed[seed]), f)
    return run


@pytest.fixture
def config(tmp_path):
    path = tmp_path / 'x.py'
    path.write_text('a = dict(b=0, c=[1, 2])\nlr = 0.1\n')
    return str(path)


def test_orchestration_commands_resume_and_json(tmp_path, config):
    work = str(tmp_path / 'w')
    metrics = {s: dict(mIoU_seen=0.1 * (s + 1), mIoU_unseen=0.2, hIoU=0.15, mIoU=0.3, aAcc=0.9)
               for s in (0, 1, 2)}
    calls = []
    res = seeds.run_seeds(config, [0, 1], work, cfg_options=['a.b=1'],
                          runner=fake_runner(calls, metrics))
    assert len(calls) == 4  # train + test per seed
    train, test = calls[0], calls[1]
    assert train[1] == osp.join(ROOT, 'tools/train.py') and train[2] == config
    assert train[train.index('--work-dir') + 1] == osp.join(work, 'seed_0')
    assert train[train.index('--seed') + 1] == '0' and '--deterministic' in train
    assert train[-2:] == ['--cfg-options', 'a.b=1'] and test[-2:] == ['--cfg-options', 'a.b=1']
    assert test[1] == osp.join(ROOT, 'tools/test.py') and test[3] == osp.join(work, 'seed_0', 'latest.pth')
    assert test[test.index('--eval') + 1] == 'mIoU'
    assert calls[2][calls[2].index('--seed') + 1] == '1'
    on_disk = json.load(open(osp.join(work, 'seeds.json')))
    assert on_disk == json.loads(json.dumps(res))
    assert [r['seed'] for r in on_disk['seeds']] == [0, 1]
    assert on_disk['mean']['mIoU_seen'] == pytest.approx(0.15)
    assert on_disk['std']['mIoU_seen'] == pytest.approx(0.0707106781)  # |0.1 - 0.2| / sqrt(2)
    # a second run with one more seed only trains and tests the new one
    calls.clear()
    res = seeds.run_seeds(config, [0, 1, 2], work, cfg_options=['a.b=1'],
                          runner=fake_runner(calls, metrics))
    assert len(calls) == 2 and all(osp.join(work, 'seed_2') in ' '.join(c) for c in calls)
    assert res['mean']['mIoU_seen'] == pytest.approx(0.2)


def test_distributed_commands_use_the_dist_scripts():
    train, test = seeds.seed_commands('c.py', 3, 'w/seed_3', launcher='pytorch', gpus=2, show=True)
    assert train[:5] == ['bash', osp.join(ROOT, 'dist_train.sh'), 'c.py', '2', 'w/seed_3']
    assert test[:5] == ['bash', osp.join(ROOT, 'dist_test.sh'), 'c.py', 'w/seed_3/latest.pth', '2']
    assert test[test.index('--show-dir') + 1] == 'w/seed_3/overlays'


def test_failed_seed_is_reported(tmp_path, config):
    def failing(cmd, log_file, env):
        raise RuntimeError('train failed')
    with pytest.raises(RuntimeError, match='train failed'):
        seeds.run_seeds(config, [0], str(tmp_path / 'w'), runner=failing)
    assert not os.path.exists(osp.join(tmp_path, 'w', 'seeds.json'))


def test_results_of_another_config_or_options_are_not_reported(tmp_path, config):
    work = str(tmp_path / 'w')
    metrics = {0: dict(mIoU=0.3), 1: dict(mIoU=0.5)}
    calls = []
    seeds.run_seeds(config, [0], work, cfg_options=['a.b=1'], runner=fake_runner(calls, metrics))
    assert len(calls) == 2
    calls.clear()
    # other options: refused before any seed runs (seed 1 is new, seed 0 holds a.b=1 results)
    with pytest.raises(RuntimeError) as e:
        seeds.run_seeds(config, [1, 0], work, cfg_options=['a.b=2'], runner=fake_runner(calls, metrics))
    msg = str(e.value)
    assert osp.join(work, 'seed_0') in msg and "cfg_options: ['a.b=1'] then, ['a.b=2'] now" in msg
    assert '-a = dict(b=1, c=[1, 2])' in msg and '+a = dict(b=2, c=[1, 2])' in msg
    assert calls == [] and not osp.exists(osp.join(work, 'seed_1'))
    # the same options but the config file edited: the resolved text differs
    with open(config, 'a') as f:
        f.write('lr = 0.2\n')
    with pytest.raises(RuntimeError, match=r'resolved config lines -lr = 0.1 \| \+lr = 0.2'):
        seeds.run_seeds(config, [0], work, cfg_options=['a.b=1'], runner=fake_runner(calls, metrics))
    # another process count is another run too
    with open(config, 'w') as f:
        f.write('a = dict(b=0, c=[1, 2])\nlr = 0.1\n')
    with pytest.raises(RuntimeError, match="processes: 1 then, 2 now"):
        seeds.run_seeds(config, [0], work, launcher='pytorch', gpus=2, cfg_options=['a.b=1'],
                        runner=fake_runner(calls, metrics))
    # unchanged: reported again without running
    res = seeds.run_seeds(config, [0], work, cfg_options=['a.b=1'], runner=fake_runner(calls, metrics))
    assert calls == [] and res['seeds'][0]['mIoU'] == 0.3
    # results without a record (an older tool's) cannot be attributed
    os.remove(osp.join(work, 'seed_0', seeds.RUN_RECORD))
    with pytest.raises(RuntimeError, match=r'holds results or checkpoints \(eval_20240101_000000.json\) '
                       r'without seeds_run.json'):
        seeds.run_seeds(config, [0], work, cfg_options=['a.b=1'], runner=fake_runner(calls, metrics))
    assert calls == []


def test_unreadable_eval_json_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / 'eval_20240101_000000_1.json').write_text(json.dumps(dict(metric=dict(mIoU=0.4))))
    (tmp_path / 'eval_20240102_000000_1.json').write_text('')  # newer, but cut off
    with caplog.at_level('WARNING'):
        assert seeds.latest_eval(str(tmp_path), logging.getLogger('seeds_test')) == dict(mIoU=0.4)
    assert f'skipped {tmp_path}/eval_20240102_000000_1.json: not a readable evaluation result' in caplog.text


def test_a_failed_seed_is_a_nonzero_exit_naming_it(tmp_path, config, monkeypatch):
    def failing(cmd, log_file, env=None):
        raise RuntimeError(f'{cmd[:3]}... failed with exit code 1; see {log_file}')
    monkeypatch.setattr(seeds, 'run_command', failing)
    with pytest.raises(SystemExit, match=r"^error: \[.*, '.*tools/train.py', '.*x.py'\]\.\.\. failed "
                       r"with exit code 1; see .*/w/seed_0/seeds_run.log$"):
        seeds.main([config, '--seeds', '0', '--work-dir', str(tmp_path / 'w')])


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return write_demo_data(str(tmp_path_factory.mktemp('demo')), num_train=4, num_val=2)


def test_relative_paths_mean_the_users_folder(demo_data, tmp_path, monkeypatch):
    """Started from another folder with a relative --work-dir (and relative data paths in the
    options): train and test run there, the results land there, nothing in the checkout."""
    here = tmp_path / 'elsewhere'
    here.mkdir()
    os.symlink(demo_data, here / 'demo')
    monkeypatch.chdir(here)
    opts = ['model.pretrained=demo/tiny_clip.pt', 'model.load_text_embedding=demo/text_embeddings.npy',
            'runner.max_iters=1', 'checkpoint_config.interval=1', 'evaluation.interval=1',
            'log_config.interval=1', 'data.samples_per_gpu=2', 'lr_config.warmup_iters=1',
            *[f'data.{s}.data_root=demo' for s in ('train', 'val', 'test')]]
    config = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    seeds.main([config, '--seeds', '0', '--work-dir', 'runs', '--cfg-options', *opts])
    result = json.load(open(here / 'runs' / 'seeds.json'))
    evals = glob.glob(str(here / 'runs' / 'seed_0' / 'eval_*.json'))
    assert len(evals) == 1 and osp.isfile(here / 'runs' / 'seed_0' / 'iter_1.pth')
    assert result['seeds'][0]['mIoU'] == json.load(open(evals[0]))['metric']['mIoU']
    assert not osp.exists(osp.join(ROOT, 'runs'))
