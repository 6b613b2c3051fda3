"""Generate the offline demo's data once (deterministic): synthetic dataset, compositional
text embeddings and a tiny pretrained CLIP (OpenAI TorchScript format).

    python tools/make_demo_data.py [--root data/demo]
"""
import argparse
import json
import os.path as osp
import shutil
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

from tools.demo_data import synthetic  # noqa: E402

VERSION = 6  # bump when the generator changes (6: pretraining on one thread)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='data/demo')
    parser.add_argument('--force', action='store_true', help='regenerate even if present')
    parser.add_argument('--clip-steps', type=int, default=300, help='tiny CLIP pretraining steps')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip')
    stamp = osp.join(args.root, 'READY.json')
    if not args.force and osp.isfile(stamp):
        made = json.load(open(stamp))
        if made.get('version') == VERSION and made.get('clip_steps') == args.clip_steps:
            print_log(f'demo data already in {args.root}', logger)
            return
    # one thread: the tiny model gains little from a second one, and when another job holds
    # the other core, two OpenMP threads wait on each other at every operation (measured up to
    # 10x slower per step)
    torch.set_num_threads(1)
    for sub in ('images', 'annotations'):  # no files left over from another version
        shutil.rmtree(osp.join(args.root, sub), ignore_errors=True)
    synthetic.make_dataset(args.root)
    emb = synthetic.text_embeddings(dim=32)
    np.save(osp.join(args.root, 'text_embeddings.npy'), emb)
    print_log(f'dataset and text embeddings written to {args.root}; pretraining the tiny CLIP', logger)
    acc = synthetic.pretrain_tiny_clip(osp.join(args.root, 'tiny_clip.pt'), emb, steps=args.clip_steps,
                                       logger=logger)
    print_log(f'tiny CLIP written to {args.root}/tiny_clip.pt (accuracy on single-class images '
              f'after pretraining: global embedding {100 * acc["global_accuracy"]:.1f}%, patch '
              f'embeddings {100 * acc["patch_accuracy"]:.1f}%)', logger)
    with open(stamp, 'w') as f:
        json.dump(dict(version=VERSION, clip_steps=args.clip_steps, **acc), f)


if __name__ == '__main__':
    main()
