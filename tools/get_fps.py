"""Images per second of the test-time path (MMSeg's test loop: pipeline output -> label map).

    python tools/get_fps.py CONFIG [CKPT] [--device cpu|cuda] [--num-images N] [--warmup W]
        [--repeat R] [--work-dir DIR] [--amp bf16|fp16] [--random-images]

Runs on the config's test set, or on random images of the test crop size when the data is
absent (or with --random-images). On CUDA the timing is synchronised. Writes
DIR/fps_<time>_<pid>.json.
"""
import argparse
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import wrap_model  # noqa: E402
from cascade_clip.apis.measure import build_model_for_measurement, warn_if_slow_amp  # noqa: E402
from cascade_clip.utils.config import read_config  # noqa: E402
from cascade_clip.utils.files import atomic_output  # noqa: E402


def batches(cfg, args, logger):
    """Yield model inputs ``dict(img=[tensor], img_metas=[[meta]])`` ready on the device."""
    test = cfg.data.test
    root = test.get('data_root') or ''
    have_data = not args.random_images and osp.isdir(osp.join(root, test.get('img_dir', '')))
    if have_data:
        from mmseg.datasets import build_dataloader, build_dataset
        dataset = build_dataset(test)
        loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=cfg.data.get('workers_per_gpu', 2),
                                  dist=False, shuffle=False, persistent_workers=False)
        print_log(f'timing on the test set ({len(dataset)} images)', logger)
        while True:
            for data in loader:
                yield data
    crop = tuple(cfg.model.test_cfg.get('crop_size', (512, 512)))
    print_log(f'test data not found: timing on random {crop[0]}x{crop[1]} images', logger)
    g = torch.Generator().manual_seed(0)
    meta = dict(ori_shape=crop + (3, ), img_shape=crop + (3, ), pad_shape=crop + (3, ), flip=False,
                scale_factor=1.0)
    while True:
        yield dict(img=[torch.randn(1, 3, *crop, generator=g)], img_metas=[[meta]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--num-images', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--amp', choices=['bf16', 'fp16'], default=None, help='autocast dtype')
    parser.add_argument('--random-images', action='store_true')
    args = parser.parse_args(argv)
    if args.num_images <= args.warmup:
        raise SystemExit(f'--num-images ({args.num_images}) must exceed --warmup ({args.warmup})')
    logger = get_logger('cascade_clip')
    cfg = read_config(args.config)
    if args.amp:
        cfg.model.amp_dtype = args.amp
        warn_if_slow_amp(args.device, args.amp, logger)
    model = build_model_for_measurement(cfg, args.checkpoint, logger)
    device = torch.device(args.device)
    model = wrap_model(model, args.device, distributed=False)
    model.eval()
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    results = []
    for run in range(args.repeat):
        it = batches(cfg, args, logger)
        elapsed = 0.0
        for i in range(args.num_images):
            data = next(it)
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                model(return_loss=False, rescale=True, **data)
            sync()
            if i >= args.warmup:
                elapsed += time.perf_counter() - t0
        fps = (args.num_images - args.warmup) / elapsed
        results.append(fps)
        print_log(f'run {run + 1}/{args.repeat}: {fps:.3f} img/s ({1000 / fps:.1f} ms/img, '
                  f'{args.num_images - args.warmup} images after {args.warmup} warm-up)', logger)
    out = dict(config=args.config, checkpoint=args.checkpoint, device=args.device, amp=args.amp,
               threads=torch.get_num_threads(), num_images=args.num_images, warmup=args.warmup,
               fps=[round(f, 3) for f in results], average_fps=round(float(np.mean(results)), 3),
               ms_per_image=round(1000 / float(np.mean(results)), 2))
    print_log(f'average: {out["average_fps"]} img/s', logger)
    if args.work_dir:
        # a name of its own per process, written whole, never replacing another run's file
        path = osp.join(args.work_dir, f'fps_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}.json')
        with atomic_output(path, replace=False) as tmp:
            mmcv.dump(out, tmp, file_format='json', indent=2)
        print_log(f'written to {path}', logger)
    return out


if __name__ == '__main__':
    main()
