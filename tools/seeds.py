"""Train and test one config over several seeds, one after the other; report mean ± std.

    python tools/seeds.py CONFIG --seeds 0 1 2 --work-dir DIR \\
        [--launcher none|pytorch --gpus N] [--show] [--cfg-options k=v ...]

For each seed S: ``tools/train.py`` (``--launcher none``) or ``dist_train.sh CONFIG N``
(``--launcher pytorch``, N = ``--gpus`` processes: GPUs, or CPU processes with Gloo) with
``--seed S --deterministic`` into ``DIR/seed_S/``, then ``tools/test.py`` (or ``dist_test.sh``)
on its last checkpoint with ``--eval mIoU --work-dir DIR/seed_S``. The metrics of every seed
go to ``DIR/seeds.json`` with their mean and standard deviation (sample std, n - 1), and a
table is logged. A seed whose ``eval_*.json`` already exists is not run again (rerun the
command to finish an interrupted run; training restarts from its latest checkpoint). Each seed
folder records the resolved config, the options and the process count it was run with
(``seeds_run.json``); a folder of another configuration is refused, naming what differs.
Paths are relative to the directory the command is started in, and the runs start there too
(relative paths inside the config mean what they mean to tools/train.py run by hand). A failed
seed stops the command with exit code 1.
"""
import argparse
import difflib
import glob
import hashlib
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmcv.utils import get_logger, print_log  # noqa: E402
from prettytable import PrettyTable  # noqa: E402

from cascade_clip.utils.files import atomic_output  # noqa: E402
from cascade_clip.utils.paths import user_path  # noqa: E402
from cascade_clip.utils.results import newest_eval  # noqa: E402

KEYS = ('mIoU_seen', 'mIoU_unseen', 'hIoU', 'mIoU', 'aAcc')


def aggregate(rows: Sequence[Dict[str, float]], keys: Sequence[str] = KEYS) -> Dict[str, Dict[str, float]]:
    """Mean and sample standard deviation (n - 1; 0 for a single row) of each key present in
    every row. Returns ``{key: {'mean': m, 'std': s, 'n': n}}``; NaN values propagate."""
    out = {}
    for key in keys:
        if not rows or any(key not in r for r in rows):
            continue
        vals = [float(r[key]) for r in rows]
        n = len(vals)
        mean = sum(vals) / n
        var = sum((v - mean)**2 for v in vals) / (n - 1) if n > 1 else 0.0
        out[key] = dict(mean=mean, std=math.sqrt(var), n=n)
    return out


def format_table(rows: Sequence[Dict[str, float]], summary: Dict[str, Dict[str, float]],
                 keys: Sequence[str] = KEYS) -> str:
    """Per-seed rows (``seed`` + metrics as fractions) and, for several seeds, a mean ± std
    row, in %."""
    keys = [k for k in keys if k in summary]
    table = PrettyTable(['seed'] + list(keys))
    for r in rows:
        table.add_row([r['seed']] + [f'{100 * r[k]:.2f}' for k in keys])
    if len(rows) > 1:  # one seed has no spread to report
        table.add_row(['mean ± std'] + [f'{100 * summary[k]["mean"]:.2f} ± {100 * summary[k]["std"]:.2f}'
                                        for k in keys])
    return table.get_string()


def latest_eval(seed_dir: str, logger=None) -> Optional[dict]:
    """The metrics of the newest whole ``eval_*.json`` in ``seed_dir`` (None if there is none;
    an unreadable one is skipped with a warning naming it)."""
    found = newest_eval(seed_dir, logger=logger)
    return None if found is None else found['metric']


def seed_commands(config: str, seed: int, seed_dir: str, launcher: str = 'none', gpus: int = 1,
                  cfg_options: Sequence[str] = (), show: bool = False,
                  python: str = sys.executable) -> List[List[str]]:
    """The train and test command lines of one seed (the scripts named by their absolute
    paths: the commands run in the user's directory)."""
    opts = ['--cfg-options', *cfg_options] if cfg_options else []
    ckpt = osp.join(seed_dir, 'latest.pth')
    test_args = ['--eval', 'mIoU', '--work-dir', seed_dir]
    if show:
        test_args += ['--show-dir', osp.join(seed_dir, 'overlays')]
    if launcher == 'none':
        train = [python, osp.join(ROOT, 'tools/train.py'), config, '--work-dir', seed_dir]
        test = [python, osp.join(ROOT, 'tools/test.py'), config, ckpt]
    else:
        train = ['bash', osp.join(ROOT, 'dist_train.sh'), config, str(gpus), seed_dir]
        test = ['bash', osp.join(ROOT, 'dist_test.sh'), config, ckpt, str(gpus)]
    train += ['--seed', str(seed), '--deterministic', '--auto-resume', *opts]
    return [train, test + test_args + opts]


RUN_RECORD = 'seeds_run.json'  # per seed folder: the resolved config its results belong to


def resolved_config(config: str, cfg_options: Sequence[str] = ()) -> str:
    """The config text after ``--cfg-options`` as tools/train.py resolves it (``_base_`` files
    merged, options parsed as tools/train.py parses them)."""
    from cascade_clip.utils.config import ConfigOptions, config_text, read_config
    cfg = read_config(config)
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
        cfg.merge_from_dict(parser.parse_args(['--cfg-options', *cfg_options]).cfg_options)
    return config_text(cfg)


def run_record(config: str, cfg_options: Sequence[str], launcher: str, gpus: int) -> dict:
    """What a seed's results depend on besides the seed: the resolved config, the options and
    the number of processes; ``key`` is a hash of them."""
    text = resolved_config(config, cfg_options)
    processes = gpus if launcher != 'none' else 1
    key = hashlib.sha256(json.dumps([text, list(cfg_options), launcher, processes]).encode()).hexdigest()
    return dict(key=key, config=config, cfg_options=list(cfg_options), launcher=launcher,
                processes=processes, resolved_config=text)


def check_seed_dir(seed_dir: str, record: dict) -> None:
    """RuntimeError when ``seed_dir`` holds results or checkpoints of another config, other
    options or another process count (they would be re-reported, or resumed, as this one's)."""
    path = osp.join(seed_dir, RUN_RECORD)
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        if old.get('key') == record['key']:
            return
        what = [f'{k}: {old.get(k)!r} then, {record[k]!r} now' for k in
                ('config', 'cfg_options', 'launcher', 'processes') if old.get(k) != record[k]]
        diff = [line for line in difflib.unified_diff(
            (old.get('resolved_config') or '').splitlines(), record['resolved_config'].splitlines(),
            lineterm='', n=0) if line[:1] in '+-' and line[:3] not in ('+++', '---')]
        if diff:
            what.append('resolved config lines ' + ' | '.join(diff[:6])
                        + (f' ... ({len(diff) - 6} more)' if len(diff) > 6 else ''))
        raise RuntimeError(
            f'{seed_dir} holds a run of another configuration ({"; ".join(what) or "another version"}): '
            f'its results would be reported, or its checkpoints resumed, as this one\'s. Use another '
            f'--work-dir (or move {seed_dir} away) to run this configuration')
    done = glob.glob(osp.join(seed_dir, 'eval_*.json')) + glob.glob(osp.join(seed_dir, '*.pth'))
    if done:
        raise RuntimeError(
            f'{seed_dir} holds results or checkpoints ({osp.basename(sorted(done)[0])}) without '
            f'{RUN_RECORD}, the record of the configuration they belong to: they cannot be told '
            f'from another configuration\'s. Use another --work-dir (or move {seed_dir} away)')


def run_command(cmd: List[str], log_file: str, env: Optional[dict] = None) -> None:
    """Run ``cmd`` in the user's directory, appending its output to ``log_file``."""
    with open(log_file, 'a') as log:
        log.write(f'$ {" ".join(cmd)}\n')
        log.flush()
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{cmd[:3]}... failed with exit code {proc.returncode}; see {log_file}')


def run_seeds(config: str, seeds: Sequence[int], work_dir: str, launcher: str = 'none', gpus: int = 1,
              cfg_options: Sequence[str] = (), show: bool = False,
              runner: Callable[[List[str], str, Optional[dict]], None] = run_command,
              logger=None) -> dict:
    """Train and test every seed not done yet, then aggregate and write ``seeds.json``."""
    record = run_record(config, cfg_options, launcher, gpus)
    # every seed folder is checked before any seed runs
    for seed in seeds:
        check_seed_dir(osp.join(work_dir, f'seed_{seed}'), record)
    os.makedirs(work_dir, exist_ok=True)
    env = dict(os.environ, PYTHON=sys.executable)
    rows = []
    for seed in seeds:
        seed_dir = osp.join(work_dir, f'seed_{seed}')
        metrics = latest_eval(seed_dir, logger)
        if metrics is None:
            os.makedirs(seed_dir, exist_ok=True)
            with atomic_output(osp.join(seed_dir, RUN_RECORD)) as tmp, open(tmp, 'w') as f:
                json.dump(record, f, indent=1)
            start = time.time()
            for cmd in seed_commands(config, seed, seed_dir, launcher, gpus, cfg_options, show):
                print_log(f'seed {seed}: {" ".join(cmd)}', logger)
                runner(cmd, osp.join(seed_dir, 'seeds_run.log'), env)
            metrics = latest_eval(seed_dir, logger)
            if metrics is None:
                raise RuntimeError(f'seed {seed}: the test wrote no eval_*.json in {seed_dir}')
            print_log(f'seed {seed} done in {time.time() - start:.0f} s', logger)
        else:
            print_log(f'seed {seed}: results already in {seed_dir}, not run again', logger)
        rows.append(dict(seed=seed, **{k: metrics[k] for k in KEYS if k in metrics}))
    summary = aggregate(rows)
    result = dict(config=config, cfg_options=list(cfg_options), config_key=record['key'], seeds=rows, mean={k: v['mean'] for k, v in summary.items()},
                  std={k: v['std'] for k, v in summary.items()}, std_ddof=1)
    with atomic_output(osp.join(work_dir, 'seeds.json')) as tmp, open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    print_log(f'{config} over seeds {list(seeds)} (mIoU %, std over seeds with n - 1):\n'
              + format_table(rows, summary) + f'\nwritten to {osp.join(work_dir, "seeds.json")}', logger)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help='none: tools/train.py + tools/test.py; pytorch: dist_train.sh + dist_test.sh')
    parser.add_argument('--gpus', type=int, default=1, help='processes per seed with --launcher pytorch')
    parser.add_argument('--show', action='store_true', help='also write overlays to DIR/seed_S/overlays')
    parser.add_argument('--cfg-options', nargs='+', default=[], help='passed to train.py and test.py')
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'repeated seeds: {args.seeds}')
    logger = get_logger('cascade_clip.seeds')
    try:  # the paths as the user meant them, wherever the runs start
        run_seeds(user_path(args.config), args.seeds, user_path(args.work_dir), args.launcher,
                  args.gpus, args.cfg_options, args.show, logger=logger)
    except RuntimeError as e:  # a failed seed or a folder of another run: named, exit code 1
        raise SystemExit(f'error: {e}')


if __name__ == '__main__':
    main()
