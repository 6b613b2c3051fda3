"""Segment one image with your own class names.

    python tools/demo.py IMAGE --config CFG --checkpoint CKPT --classes "cat,sofa,window" \\
        [--device cpu] [--out overlay.png] [--out-mask mask.png] [--opacity 0.5]

Writes a colour overlay with a legend of the classes present and, if asked, the label map
(class index per pixel, in the order of --classes; 8-bit PNG, 16-bit above 255 classes).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import init_model, read_image, segment_image  # noqa: E402
from cascade_clip.utils import draw_segmentation, legend_names  # noqa: E402
from cascade_clip.utils.vocabulary_names import parse_class_list  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image')
    parser.add_argument('--config', required=True)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--classes', help='comma-separated class names, quoted as in CSV when a '
                        'name holds a comma: \'"ice cream, vanilla",dog\' (default: the config '
                        'dataset\'s)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', default='overlay.png', help='colour overlay with legend')
    parser.add_argument('--out-mask', help='label map PNG (class index per pixel)')
    parser.add_argument('--opacity', type=float, default=0.5)
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip')
    if not 0 < args.opacity <= 1:
        raise SystemExit(f'--opacity must be in (0, 1], got {args.opacity}')
    names = None
    if args.classes is not None:
        names = parse_class_list(args.classes)
    try:
        img = read_image(args.image)
        model = init_model(args.config, args.checkpoint, device=args.device, class_names=names)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}')
    labels, _ = segment_image(model, img)
    names = list(model.CLASSES)
    overlay = draw_segmentation(img, labels, names, model.PALETTE, args.opacity)
    mmcv.imwrite(overlay, args.out)
    print_log(f'overlay written to {args.out}; classes present: {", ".join(legend_names(labels, names))}', logger)
    if args.out_mask:
        dtype = np.uint8 if len(names) <= 256 else np.uint16
        mmcv.imwrite(labels.astype(dtype), args.out_mask)
        print_log(f'label map written to {args.out_mask} (values index --classes)', logger)


if __name__ == '__main__':
    main()
