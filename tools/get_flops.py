"""FLOPs (fvcore, multiply-adds as fvcore counts them) of one crop, and parameter counts.

    python tools/get_flops.py CONFIG [--shape H W] [--device cpu|cuda] [--checkpoint CKPT]

Works without weights or text-embedding files (random values do not change the counts).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis.measure import (build_model_for_measurement, count_flops,  # noqa: E402
                                          count_params)
from cascade_clip.utils.config import read_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help='input size (default: the test crop size, else 512 512)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--checkpoint', default=None)
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip')
    cfg = read_config(args.config)
    shape = tuple(args.shape) if args.shape else tuple(cfg.model.test_cfg.get('crop_size', (512, 512)))
    model = build_model_for_measurement(cfg, args.checkpoint, logger).to(args.device)
    flops, by_module = count_flops(model, shape)
    total, trainable = count_params(model)
    split = ', '.join(f'{k} {by_module.get(f"model.{k}", 0) / 1e9:.2f}'
                      for k in ('backbone', 'decode_head'))
    print_log('\n' + '=' * 60 + f'\nConfig: {args.config}\nInput shape: (1, 3, {shape[0]}, {shape[1]})\n'
              f'Flops: {flops / 1e9:.2f} GFLOPs (fvcore; {split})\n'
              f'       {by_module["comparable"] / 1e9:.2f} GFLOPs comparable with fvcore on the '
              f'published code (without the image encoder\'s attention products, the resize of '
              f'the score maps counted as an interpolation)\n'
              f'Params: {total / 1e6:.2f} M total, {trainable / 1e6:.2f} M trainable\n' + '=' * 60, logger)
    return flops, total, trainable


if __name__ == '__main__':
    main()
