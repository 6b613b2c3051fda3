"""Train a Cascade-CLIP model (MMSeg 0.30's tools/train.py flags), on CUDA or the CPU.

    python tools/train.py CONFIG [--work-dir DIR] [--load-from CKPT] [--resume-from CKPT]
        [--seed N] [--deterministic] [--cfg-options k=v ...] [--launcher pytorch]
        [--total-batch N] [--auto-resume] [--resume-any-batch]

``--total-batch N`` keeps the effective batch N (the published runs: 4 GPUs x 4 images = 16)
on fewer GPUs: the K = N / (processes x samples_per_gpu) micro-batches of each step are
accumulated exactly (``GradientCumulativeOptimizerHook`` with ``cumulative_iters=K``), and
the schedule (max_iters, warm-up, poly decay) still counts optimizer steps.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmcv.cnn.utils import revert_sync_batchnorm  # noqa: E402
from mmcv.runner import get_dist_info  # noqa: E402
from mmcv.utils import get_git_hash  # noqa: E402
from mmseg import __version__ as mmseg_version  # noqa: E402
from mmseg.apis import init_random_seed, set_random_seed  # noqa: E402
from mmseg.datasets import build_dataset  # noqa: E402
from mmseg.models import build_segmentor  # noqa: E402
from mmseg.utils import collect_env, get_root_logger, setup_multi_processes  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import (check_config, check_model_matches_dataset,  # noqa: E402
                               check_overrides, exit_on_sigterm, init_distributed,
                               resolve_precision, set_total_batch, train_segmentor)
from cascade_clip.apis.work_dir import lock_work_dir  # noqa: E402
from cascade_clip.utils.checkpoint import check_local_source  # noqa: E402
from cascade_clip.utils.config import (ConfigOptions, config_text, dump_path,  # noqa: E402
                                       read_config, write_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a Cascade-CLIP segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--load-from', help='the checkpoint file to load weights from (it must '
                        'match the model exactly, unless --load-partial)')
    parser.add_argument('--load-partial', action='store_true',
                        help='fine-tune from a checkpoint of another model: load the matching '
                        'weights and log every key that was skipped')
    parser.add_argument('--resume-from', help='the checkpoint file to resume from')
    parser.add_argument('--auto-resume', action='store_true', help='resume from the latest checkpoint')
    parser.add_argument('--resume-any-batch', action='store_true',
                        help='resume although data.samples_per_gpu, the accumulated micro-batches '
                        'or the number of processes differ from the checkpoint\'s run (refused '
                        'otherwise: the data order changes); a warning is logged')
    parser.add_argument('--no-validate', action='store_true', help='do not evaluate during training')
    parser.add_argument('--gpu-id', type=int, default=0, help='id of the GPU (non-distributed)')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument('--diff-seed', action='store_true', help='a different seed per rank')
    parser.add_argument('--deterministic', action='store_true', help='deterministic CUDNN')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=ConfigOptions,
                        help='override config settings, key=value')
    parser.add_argument('--total-batch', type=int, default=None,
                        help='effective batch per optimizer step (e.g. 16, the published 4 GPUs '
                        'x 4 images): gradient accumulation over total / (processes x '
                        'samples_per_gpu) micro-batches')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = read_config(args.config)
    check_overrides(cfg, args.cfg_options)  # an option nothing reads would change nothing
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    check_config(cfg, 'train')  # unknown keys and impossible values fail now, before any work
    if cfg.get('cudnn_benchmark', False):
        torch.backends.cudnn.benchmark = True
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.load_from is not None:
        cfg.load_from = args.load_from
    if args.load_partial:
        cfg.load_partial = True
    if args.resume_from is not None:
        cfg.resume_from = args.resume_from
    cfg.auto_resume = args.auto_resume
    for key in ('resume_from', 'load_from'):  # a URL is refused before any work
        try:
            check_local_source(cfg.get(key), f'{key} checkpoint')
        except ValueError as e:
            raise SystemExit(f'error: {e}')
    cfg.resume_any_batch = args.resume_any_batch
    cfg.gpu_ids = [args.gpu_id]
    cfg.device = 'cuda' if torch.cuda.is_available() else 'cpu'

    distributed = init_distributed(args.launcher, **cfg.get('dist_params', {}))
    rank, world_size = get_dist_info()
    if distributed:
        cfg.gpu_ids = list(range(world_size))

    # cfg.fp16 / fp16 hook types onto model.amp_dtype (shown in the dumped and logged config)
    resolve_precision(cfg, logger='silent')
    if args.total_batch is not None:
        set_total_batch(cfg, args.total_batch, world_size)

    # a value no config file can hold, or no name for the dump, is named before the work dir
    # is touched (the user's config is never overwritten by the dump)
    try:
        text = config_text(cfg)
        dump = dump_path(args.config, cfg.work_dir)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f'error: config {args.config}: {e}')
    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    work_dir_lock = lock_work_dir(cfg.work_dir) if rank == 0 else None  # noqa: F841 (held to the end)
    if rank == 0:
        write_config(cfg, dump, args.config)
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    log_file = osp.join(cfg.work_dir, f'{timestamp}.log')
    logger = get_root_logger(log_file=log_file, log_level=cfg.log_level)
    setup_multi_processes(cfg)  # after the logger has its file (it would create it without)

    meta = dict()
    env_info = '\n'.join([f'{k}: {v}' for k, v in collect_env().items()])
    logger.info('Environment info:\n' + env_info)
    meta['env_info'] = env_info
    logger.info(f'Distributed training: {distributed} (world size {world_size}, device {cfg.device})')
    logger.info(f'Config:\n{text}')
    if osp.basename(dump) != osp.basename(args.config):
        logger.info(f'resolved config written to {dump}, not to {osp.basename(args.config)} there: '
                    f'that file is the config itself or a file of yours (only earlier dumps are '
                    f'replaced)')

    seed = init_random_seed(args.seed, device=cfg.device)
    seed = seed + rank if args.diff_seed else seed
    logger.info(f'Set random seed to {seed}, deterministic: {args.deterministic}')
    set_random_seed(seed, deterministic=args.deterministic)
    cfg.seed = seed
    meta['seed'] = seed
    meta['exp_name'] = osp.basename(args.config)

    datasets = [build_dataset(cfg.data.train)]
    if len(cfg.workflow) == 2:
        val_dataset = copy.deepcopy(cfg.data.val)
        val_dataset.pipeline = cfg.data.train.pipeline
        datasets.append(build_dataset(val_dataset))
    # class names flow from the dataset into the model (text embeddings, legends)
    if cfg.model.get('class_names') is None:
        cfg.model.class_names = list(datasets[0].CLASSES)

    model = build_segmentor(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    for ds in datasets:  # a trained class reported as "unseen" would void every figure
        check_model_matches_dataset(model, ds, args.config)
    model.init_weights()
    if cfg.device == 'cpu' or not distributed:
        model = revert_sync_batchnorm(model)  # SyncBN needs GPUs and a process group
    logger.info(model)

    if cfg.checkpoint_config is not None:
        cfg.checkpoint_config.meta = dict(
            mmseg_version=f'{mmseg_version}+{get_git_hash()[:7]}',
            cascade_clip_version=cascade_clip.__version__,
            config=config_text(cfg),
            CLASSES=list(datasets[0].CLASSES),
            PALETTE=[list(map(int, c)) for c in datasets[0].PALETTE] if datasets[0].PALETTE is not None else None)
    train_segmentor(model, datasets, cfg, distributed=distributed, validate=not args.no_validate,
                    timestamp=timestamp, meta=meta)


if __name__ == '__main__':
    exit_on_sigterm()  # a stopped run removes the temporary file of a write in progress
    main()
