"""Test (and evaluate) a Cascade-CLIP checkpoint (MMSeg 0.30's tools/test.py flags).

    python tools/test.py CONFIG CKPT --eval mIoU [--work-dir DIR] [--show-dir DIR]
        [--opacity 0.5] [--out results.pkl] [--format-only] [--aug-test] [--launcher pytorch]

Every output (--show-dir, the --format-only results, --out, the metrics json) must lie outside
the dataset's image and label folders (refused before testing) and is written whole or not at
all. The metrics go to WORK_DIR/eval_<time>_<pid>.json, never replacing another run's, with
the SHA-256 of the checkpoint and the ``result_key`` of everything they depend on.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
from mmcv.cnn.utils import revert_sync_batchnorm  # noqa: E402
from mmcv.runner import get_dist_info  # noqa: E402
from mmseg.apis import single_gpu_test  # noqa: E402
from mmseg.datasets import build_dataloader, build_dataset  # noqa: E402
from mmseg.models import build_segmentor  # noqa: E402
from mmseg.utils import get_device, get_root_logger, setup_multi_processes  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import (check_config, check_model_matches_dataset,  # noqa: E402
                               check_overrides, exit_on_sigterm, init_distributed, load_weights,
                               resolve_precision, wrap_model)
from cascade_clip.core import collect_results  # noqa: E402
from cascade_clip.utils.config import ConfigOptions, config_values, read_config  # noqa: E402
from cascade_clip.utils.files import atomic_output  # noqa: E402
from cascade_clip.utils.paths import check_names_inside, check_outputs_apart  # noqa: E402
from cascade_clip.utils.results import (eval_json_path, file_sha256, result_key,  # noqa: E402
                                        write_eval_json)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a Cascade-CLIP model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation metrics (eval_<time>_<pid>.json) go')
    parser.add_argument('--aug-test', action='store_true', help='multi-scale + flip test')
    parser.add_argument('--out', help='output result file in pickle format')
    parser.add_argument('--format-only', action='store_true',
                        help='format the results without evaluation (e.g. for a test server)')
    parser.add_argument('--eval', type=str, nargs='+', help='metrics, e.g. "mIoU"')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--show-dir', help='directory for colour overlays with a class legend')
    parser.add_argument('--gpu-collect', action='store_true',
                        help='accepted for MMSeg compatibility: results are always gathered over '
                        'the process group')
    parser.add_argument('--gpu-id', type=int, default=0, help='id of the GPU (non-distributed)')
    parser.add_argument('--tmpdir', help='accepted for MMSeg compatibility and unused: results are '
                        'gathered over the process group, no folder is written or deleted')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=ConfigOptions,
                        help='override config settings, key=value')
    parser.add_argument('--eval-options', nargs='+', action=ConfigOptions,
                        help='custom options for evaluation')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of the overlays (0, 1]')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    if not (args.out or args.eval or args.format_only or args.show or args.show_dir):
        raise SystemExit('Please specify at least one operation (save/eval/format/show the '
                         'results) with --out, --eval, --format-only, --show or --show-dir')
    if args.eval and args.format_only:
        raise SystemExit('--eval and --format-only cannot be both specified')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('The output file must be a pkl file.')
    if not 0 < args.opacity <= 1:
        raise SystemExit(f'--opacity must be in (0, 1], got {args.opacity}')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')

    cfg = read_config(args.config)
    check_overrides(cfg, args.cfg_options)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    check_config(cfg, 'test')
    # the resolved config's values, part of the key of the metrics json (a value no config
    # file can hold is refused here, before any work)
    resolved = config_values(cfg) if args.work_dir is not None and args.eval else None
    if args.aug_test:
        cfg.data.test.pipeline[1].img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        cfg.data.test.pipeline[1].flip = True
    cfg.model.pretrained = None  # everything comes from the checkpoint
    cfg.model.train_cfg = None
    cfg.data.test.test_mode = True
    resolve_precision(cfg, logger='silent')  # cfg.fp16 -> model.amp_dtype, the one precision key
    device = get_device()
    cfg.gpu_ids = [args.gpu_id]

    distributed = init_distributed(args.launcher, **cfg.get('dist_params', {}))
    rank, _ = get_dist_info()
    setup_multi_processes(cfg)  # after the process group: it creates the logger
    logger = get_root_logger(log_level=cfg.get('log_level', 'INFO'))
    json_file = (eval_json_path(args.work_dir) if args.work_dir is not None and args.eval and rank == 0
                 else None)

    dataset = build_dataset(cfg.data.test)
    eval_kwargs = {} if args.eval_options is None else dict(args.eval_options)
    if args.format_only:
        eval_kwargs.setdefault('imgfile_prefix', osp.join(args.work_dir or '.', 'format_results'))
    format_only = args.format_only or eval_kwargs.get('imgfile_prefix') is not None
    try:  # every output apart from the data, before any work
        check_outputs_apart(
            {'--show-dir': args.show_dir, '--out': args.out, 'the metrics file': json_file,
             'the --format-only results folder': eval_kwargs.get('imgfile_prefix')},
            {"the dataset's image folder": dataset.img_dir,
             "the dataset's label folder": dataset.ann_dir})
        if args.show_dir:  # MMSeg writes each overlay at show_dir/<image name relative to img_dir>
            check_names_inside(args.show_dir, [i['filename'] for i in dataset.img_infos], 'overlay')
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    if args.work_dir is not None and rank == 0:
        mmcv.mkdir_or_exist(osp.abspath(args.work_dir))
    loader_cfg = dict(num_gpus=len(cfg.gpu_ids), dist=distributed, shuffle=False)
    loader_cfg.update({k: v for k, v in cfg.data.items() if k not in [
        'train', 'val', 'test', 'train_dataloader', 'val_dataloader', 'test_dataloader']})
    test_loader_cfg = {**loader_cfg, 'samples_per_gpu': 1, 'shuffle': False,
                       **cfg.data.get('test_dataloader', {})}
    data_loader = build_dataloader(dataset, **test_loader_cfg)

    # the vocabulary is the test dataset's (cross-dataset tests use another one than training)
    # (the configs name no classes; the model would otherwise get placeholder names)
    if cfg.model.get('class_names') is None:
        cfg.model.class_names = list(dataset.CLASSES)
    model = build_segmentor(cfg.model, test_cfg=cfg.get('test_cfg'))
    checkpoint_sha256 = key = None
    if json_file is not None:  # hashed before the weights are read from the file
        checkpoint_sha256 = file_sha256(args.checkpoint)
        key = result_key(checkpoint_sha256, resolved, [i['filename'] for i in dataset.img_infos],
                         dict(metric=list(args.eval), options=args.eval_options or {},
                              aug_test=args.aug_test))
    # the checkpoint must be this model; unless the config is a cross-dataset one, it must
    # have been trained on this dataset's classes and split
    try:
        load_weights(model, args.checkpoint, config=args.config, strict=True,
                     check_classes=not cfg.get('cross_dataset', False), logger=logger)
        check_model_matches_dataset(model, dataset, args.config)
    except ValueError as e:  # CheckpointError included: a message, not a traceback
        raise SystemExit(f'error: {e}')
    model.PALETTE = dataset.PALETTE

    model = revert_sync_batchnorm(model) if device == 'cpu' else model
    model = wrap_model(model, device, distributed)
    pre_eval = args.eval is not None
    if not distributed:
        results = single_gpu_test(model, data_loader, args.show, args.show_dir, False,
                                  args.opacity, pre_eval=pre_eval, format_only=format_only,
                                  format_args=eval_kwargs)
    else:
        # each process runs the single-process loop on its share of the images (drawing them
        # with --show-dir, which MMSeg's multi_gpu_test does not), then rank 0 gathers the
        # parts over the process group: no files, no folder (--tmpdir is not needed)
        results = single_gpu_test(model, data_loader, False, args.show_dir, False,
                                  args.opacity, pre_eval=pre_eval, format_only=format_only,
                                  format_args=eval_kwargs)
        results = collect_results(results, len(dataset))

    if rank == 0:
        if args.out:
            logger.info(f'writing results to {args.out}')
            with atomic_output(args.out) as tmp:
                mmcv.dump(results, tmp)
        if args.eval:
            eval_kwargs.update(metric=args.eval)
            metric = dataset.evaluate(results, logger=logger, **eval_kwargs)
            if json_file is not None:
                write_eval_json(json_file, dict(
                    config=args.config, checkpoint=args.checkpoint,
                    checkpoint_sha256=checkpoint_sha256, images=len(dataset),
                    result_key=key, metric=metric))
                logger.info(f'metrics written to {json_file}')


if __name__ == '__main__':
    exit_on_sigterm()  # a stopped run removes the temporary file of a write in progress
    main()
