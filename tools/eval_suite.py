"""Evaluate one checkpoint on a whole benchmark row and print one table.

    python tools/eval_suite.py CKPT [--train-config CONFIG] [--config-dir DIR] \\
        [--suite open-vocabulary|zero-shot] [--work-dir work_dirs/suite] \\
        [--data-dir DIR] [--embedding-dir DIR] [--launcher none|pytorch --gpus N] \\
        [--cfg-options k=v ...]

``--suite open-vocabulary`` (default): a model trained on COCO-Stuff, tested without further
training on ADE20K-847, Pascal Context-459, ADE20K-150, Pascal Context-59, Pascal VOC-20,
VOC-21 (background a class) and Context-60, with the configs of ``--config-dir`` (default
``configs/cross_dataset``). ``--suite zero-shot``: the in-domain seen / unseen settings
(COCO-Stuff, VOC-20, Context-59, Context-60, configs under ``configs/``); each setting has its
own checkpoint, given as ``NAME=CKPT`` (names: ``coco``, ``voc20``, ``pc59``, ``pc60``).

``--train-config``: the config the checkpoint was trained with; its model section (widths,
prompts, test mode, ...) replaces the suite configs' one, except the vocabulary keys (class
ids, names, text-embedding file). ``--data-dir`` / ``--embedding-dir`` move the ``datasets/`` /
``text_embeddings/`` folders the configs point at.

A dataset whose images, label maps, split file or text embeddings are missing is reported
with the reason and skipped; the others run through ``tools/test.py`` (``--launcher none``) or
``dist_test.sh`` (``--launcher pytorch``, N processes) with ``--eval mIoU`` into
``WORK_DIR/NAME/``. A dataset whose ``eval_*.json`` holds the same inputs (the checkpoint's
content, the resolved config, the image list: its ``result_key``) is not run again; an
unreadable one is skipped with a warning. The table (Markdown) and ``suite.json`` go to the
work dir; a failed dataset makes the exit code 1. Paths are relative to the directory the
command is started in, as are the tests it runs.
"""
import argparse
import copy
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmcv.utils import Config, get_logger, print_log  # noqa: E402

from cascade_clip.utils.config import ConfigOptions, config_values, read_config, write_config  # noqa: E402
from cascade_clip.utils.files import atomic_output  # noqa: E402
from cascade_clip.utils.paths import user_path  # noqa: E402
from cascade_clip.utils.results import file_sha256, newest_eval, result_key  # noqa: E402

# name, label, config (relative to the config dir), build_text_embeddings --dataset
SUITES = {
    'open-vocabulary': [
        ('ade847', 'ADE20K-847', 'coco-to-ade847.py', 'ade847'),
        ('pc459', 'Pascal Context-459', 'coco-to-pc459.py', 'pc459'),
        ('ade150', 'ADE20K-150', 'coco-to-ade150.py', 'ade150'),
        ('pc59', 'Pascal Context-59', 'coco-to-context.py', 'context59'),
        ('voc20', 'Pascal VOC-20', 'coco-to-voc.py', 'voc20'),
        ('voc21', 'Pascal VOC-21 (VOC-20b)', 'coco-to-voc21.py', 'voc21'),
        ('pc60', 'Pascal Context-60', 'coco-to-context60.py', 'context60'),
    ],
    'zero-shot': [
        ('coco', 'COCO-Stuff 171', 'coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py', 'coco_stuff'),
        ('voc20', 'Pascal VOC-20', 'voc_20/vpt_seg_zero_vit-b_512x512_20k_12_10.py', 'voc20'),
        ('pc59', 'Pascal Context-59', 'context_59/vpt_seg_zero_vit-b_512x512_40k_12_10.py', 'context59'),
        ('pc60', 'Pascal Context-60', 'context_60/vpt_seg_zero_vit-b_512x512_40k_12_10.py', 'context60'),
    ],
}
DEFAULT_CONFIG_DIR = {'open-vocabulary': 'configs/cross_dataset', 'zero-shot': 'configs'}
VOCABULARY_KEYS = ('base_class', 'novel_class', 'both_class', 'class_names', 'load_text_embedding',
                   'multi_prompts')
METRICS = ('mIoU', 'mIoU_seen', 'mIoU_unseen', 'hIoU')


def parse_checkpoints(items: Sequence[str], names: Sequence[str]) -> Dict[str, str]:
    """``CKPT`` (every dataset) and / or ``NAME=CKPT`` pairs -> {name: checkpoint} (absolute)."""
    out: Dict[str, str] = {}
    default = None
    for item in items:
        name, sep, path = item.partition('=')
        if sep and name in names:
            out[name] = path
        elif sep and not osp.exists(item):
            raise SystemExit(f'unknown dataset {name!r} in {item!r}: expected one of {list(names)}')
        else:
            default = item
    return {n: user_path(out.get(n, default)) for n in names if out.get(n, default) is not None}


def move_prefix(path: str, old: str, new: Optional[str]) -> str:
    """``old/rest`` -> ``new/rest`` (paths elsewhere unchanged)."""
    if new is None or path is None:
        return path
    parts = path.replace('\\', '/').split('/')
    return osp.join(new, *parts[1:]) if parts[0] == old else path


def resolve_config(path: str, train_config: Optional[Config], cfg_options: Optional[dict],
                   data_dir: Optional[str], embedding_dir: Optional[str]) -> Config:
    cfg = read_config(path)
    if train_config is not None:
        model = copy.deepcopy(train_config.model)
        for key in VOCABULARY_KEYS:
            if key in cfg.model:
                model[key] = cfg.model[key]
            else:
                model.pop(key, None)
        cfg.model = model
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    for split in ('train', 'val', 'test'):
        if split in cfg.data and cfg.data[split].get('data_root'):
            cfg.data[split].data_root = move_prefix(cfg.data[split].data_root, 'datasets', data_dir)
    if cfg.model.get('load_text_embedding'):
        cfg.model.load_text_embedding = move_prefix(cfg.model.load_text_embedding, 'text_embeddings',
                                                    embedding_dir)
    return cfg


def dataset_images(cfg: Config) -> List[str]:
    """The test images' file names; the dataset's own error (missing folder, split, label map)
    if any."""
    import cascade_clip  # noqa: F401
    from mmseg.datasets import build_dataset
    return [i['filename'] for i in build_dataset(dict(cfg.data.test, test_mode=True)).img_infos]


# the evaluation tools/test.py runs for a row (part of the key of its results)
EVALUATION = dict(metric=['mIoU'], options={}, aug_test=False)


def test_command(config: str, ckpt: str, work_dir: str, launcher: str, gpus: int) -> List[str]:
    args = ['--eval', 'mIoU', '--work-dir', work_dir]
    if launcher == 'none':
        return [sys.executable, osp.join(ROOT, 'tools/test.py'), config, ckpt, *args]
    return ['bash', osp.join(ROOT, 'dist_test.sh'), config, ckpt, str(gpus), *args]


def run_suite(suite: str, checkpoints: Dict[str, str], work_dir: str, config_dir: str,
              train_config: Optional[str] = None, cfg_options: Optional[dict] = None,
              data_dir: Optional[str] = None, embedding_dir: Optional[str] = None,
              launcher: str = 'none', gpus: int = 1, logger=None) -> List[dict]:
    os.makedirs(work_dir, exist_ok=True)
    train_cfg = read_config(train_config) if train_config else None
    rows = []
    for name, label, rel, emb_key in SUITES[suite]:
        row = dict(name=name, dataset=label, classes=None, images=None, status='missing')
        rows.append(row)
        path = osp.join(config_dir, rel)
        if not osp.isfile(path):
            row['reason'] = f'config not found: {path}'
            continue
        cfg = resolve_config(path, train_cfg, cfg_options, data_dir, embedding_dir)
        row['classes'] = len(cfg.model.both_class)
        try:
            images = dataset_images(cfg)
            row['images'] = len(images)
        except (FileNotFoundError, ValueError) as e:
            row['reason'] = f'data: {e}'
            continue
        emb = cfg.model.get('load_text_embedding')
        if emb and not osp.isfile(emb):
            template = 'single' if 'single' in osp.basename(emb) else 'multi'
            row['reason'] = (f'text embeddings not found: {emb} (python tools/build_text_embeddings.py '
                             f'--clip clip_pretrain/ViT-B-16.pt --dataset {emb_key} --template '
                             f'{template} --out {emb})')
            continue
        ckpt = checkpoints.get(name)
        if ckpt is None or not osp.isfile(ckpt):
            row['reason'] = (f'checkpoint not found: {ckpt}' if ckpt else
                             f'no checkpoint given (pass {name}=CKPT)')
            continue
        out_dir = osp.join(work_dir, name)
        os.makedirs(out_dir, exist_ok=True)
        # results are reused only when made from the same checkpoint content, resolved config
        # and images (a moved latest.pth or other options give another key)
        key = result_key(file_sha256(ckpt), config_values(cfg), images, EVALUATION)
        found = newest_eval(out_dir, key, logger)
        if found is None:
            resolved = osp.join(out_dir, 'config.py')
            write_config(cfg, resolved, path)
            cmd = test_command(resolved, ckpt, out_dir, launcher, gpus)
            print_log(f'{label}: {" ".join(cmd)}', logger)
            log_file = osp.join(out_dir, 'test.log')
            with open(log_file, 'a') as log:  # run from the user's directory, as the paths are
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      env=dict(os.environ, PYTHON=sys.executable))
            found = newest_eval(out_dir, key, logger)
            if proc.returncode != 0 or found is None:
                why = ('wrote no eval_*.json of these inputs' if proc.returncode == 0 else
                       f'exit code {proc.returncode}')
                row.update(status='failed', reason=f'tools/test.py {why}; see {log_file}')
                continue
        else:
            print_log(f'{label}: results of this checkpoint, config and images already in '
                      f'{out_dir}, not run again', logger)
        metrics = found['metric']
        row.update(status='done', **{k: float(metrics[k]) for k in METRICS if k in metrics})
    return rows


def pct(v) -> str:
    return '—' if v is None else f'{100 * v:.1f}'


def format_markdown(rows: Sequence[dict]) -> str:
    split = any('hIoU' in r for r in rows)
    head = ['dataset', 'classes', 'images', 'mIoU'] + (['seen', 'unseen', 'hIoU'] if split else [])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['dataset'], str(r['classes'] or '—'), str(r['images'] or '—'), pct(r.get('mIoU'))]
        if split:
            cells += [pct(r.get(k)) for k in ('mIoU_seen', 'mIoU_unseen', 'hIoU')]
        if r['status'] != 'done':
            cells[3] = r['status']
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = [f'- {r["dataset"]}: {r["status"]}: {r["reason"]}' for r in rows if r['status'] != 'done']
    return '\n'.join(lines + ([''] + notes if notes else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', help='CKPT, or NAME=CKPT per dataset')
    parser.add_argument('--suite', choices=list(SUITES), default='open-vocabulary')
    parser.add_argument('--train-config', help='the config the checkpoint was trained with')
    parser.add_argument('--config-dir', help='folder of the suite configs (default: per suite)')
    parser.add_argument('--work-dir', default='work_dirs/suite')
    parser.add_argument('--data-dir', help='where the configs\' datasets/ folder is')
    parser.add_argument('--embedding-dir', help='where the configs\' text_embeddings/ folder is')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    parser.add_argument('--gpus', type=int, default=1, help='processes with --launcher pytorch')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='applied to every config (after --train-config)')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip.suite')
    names = [n for n, *_ in SUITES[args.suite]]
    # every path the user gave, relative to where the command started (the tests run there too)
    work_dir = user_path(args.work_dir)
    config_dir = user_path(args.config_dir) if args.config_dir else osp.join(
        ROOT, DEFAULT_CONFIG_DIR[args.suite])
    optional = [None if p is None else user_path(p)
                for p in (args.train_config, args.data_dir, args.embedding_dir)]
    rows = run_suite(args.suite, parse_checkpoints(args.checkpoints, names), work_dir, config_dir,
                     optional[0], args.cfg_options, optional[1], optional[2], args.launcher,
                     args.gpus, logger)
    table = format_markdown(rows)
    with atomic_output(osp.join(work_dir, 'suite.md')) as tmp, open(tmp, 'w') as f:
        f.write(table + '\n')
    with atomic_output(osp.join(work_dir, 'suite.json')) as tmp, open(tmp, 'w') as f:
        json.dump(dict(suite=args.suite, checkpoints=args.checkpoints, rows=rows), f, indent=1)
    print(f'{args.suite} suite (mIoU %):\n\n{table}\n\nwritten to '
          f'{osp.join(work_dir, "suite.md")} and suite.json')
    failed = [r['dataset'] for r in rows if r['status'] == 'failed']
    if failed:
        raise SystemExit(f'error: the test of {", ".join(failed)} failed (see the notes above)')


if __name__ == '__main__':
    main()
