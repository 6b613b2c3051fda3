"""Segment an image, a folder of images or a glob's images with your own class names.

    python tools/demo.py INPUT --config CFG --checkpoint CKPT [--classes "cat,sofa,window"]
        [--device cpu] [--opacity 0.5]
        [--out overlay.png] [--out-mask mask.png]        (INPUT one image file)
        [--out-dir DIR] [--out-mask-dir DIR]             (INPUT a file, a folder or a glob)

INPUT is an image file, a folder (its images and those of all its sub-folders) or a quoted
glob pattern ('photos/*.jpg', 'photos/**/*.png'). A folder or a glob yields the files ending
in .bmp .jpeg .jpg .png .tif .tiff .webp (any case); hidden files and folders are left out.

Writes, per image, a colour overlay with a legend of the classes present and, if asked, the
label map (class index per pixel, in the order of --classes; PNG only: 8-bit, 16-bit above 256
classes). With --out-dir / --out-mask-dir each image's files keep its name relative to the
folder (or to the glob's leading folders without wildcards) with .png: photos/a/x.jpg ->
DIR/a/x.png. An image that cannot be read is named in a warning and the others go on; the
exit status is then 1. No output may replace an input image or another output (checked before
any work); every file is written whole or not at all.
"""
import argparse
import logging
import os.path as osp
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import init_model, read_image, segment_image  # noqa: E402
from cascade_clip.utils import draw_segmentation, legend_names  # noqa: E402
from cascade_clip.utils.image_files import (check_image_name, check_label_map_name,  # noqa: E402
                                            check_outputs_spare_inputs, find_images, write_image,
                                            write_label_map)
from cascade_clip.utils.paths import join_inside  # noqa: E402
from cascade_clip.utils.vocabulary_names import parse_class_list  # noqa: E402

Job = Tuple[str, Optional[str], Optional[str]]  # (image, overlay path or None, label map path or None)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', nargs='+', help='an image file, a folder of images or a quoted glob')
    parser.add_argument('--config', required=True)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--classes', help='comma-separated class names, quoted as in CSV when a '
                        'name holds a comma: \'"ice cream, vanilla",dog\' (default: the config '
                        'dataset\'s)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='one image: colour overlay with legend (default overlay.png '
                        'unless --out-dir or --out-mask-dir is given)')
    parser.add_argument('--out-mask', help='one image: label map, a .png (class index per pixel)')
    parser.add_argument('--out-dir', help='folder for the overlays, one <relative name>.png per image')
    parser.add_argument('--out-mask-dir', help='folder for the label maps, one <relative name>.png per image')
    parser.add_argument('--opacity', type=float, default=0.5)
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> List[Job]:
    """The images to segment and the files to write for each; ValueError (or
    FileNotFoundError) naming the option or file when the request is not sound."""
    if len(args.input) > 1:
        shown = ', '.join(args.input[:3]) + (', ...' if len(args.input) > 3 else '')
        raise ValueError(f'got {len(args.input)} inputs ({shown}): give one image, folder or glob '
                         f'pattern; quote a glob (\'photos/*.jpg\') so that the shell does not '
                         f'expand it')
    source = args.input[0]
    per_file, per_folder = args.out or args.out_mask, args.out_dir or args.out_mask_dir
    if per_file and per_folder:
        raise ValueError('--out / --out-mask (one image) and --out-dir / --out-mask-dir (one file '
                         'per image) cannot be combined')
    if not 0 < args.opacity <= 1:
        raise ValueError(f'--opacity must be in (0, 1], got {args.opacity}')
    if args.out is not None:
        check_image_name(args.out, '--out')
    if args.out_mask is not None:
        check_label_map_name(args.out_mask, '--out-mask')
    root, names = find_images(source)
    images = [osp.join(root, n) for n in names]
    if per_file or not per_folder:
        if not osp.isfile(source):
            raise ValueError(f'{source} is a folder or a glob ({len(images)} images): give '
                             f'--out-dir DIR (and --out-mask-dir DIR) for one overlay (and label '
                             f'map) per image; --out and --out-mask name the files of one image')
        jobs = [(images[0], args.out or 'overlay.png', args.out_mask)]
    else:
        jobs = []
        for name, image in zip(names, images):
            png = osp.splitext(name)[0] + '.png'
            jobs.append((image,
                         join_inside(args.out_dir, png, 'overlay') if args.out_dir else None,
                         join_inside(args.out_mask_dir, png, 'label map') if args.out_mask_dir else None))
    outputs = [(path, f'{what} of {image}') for image, overlay, mask in jobs
               for path, what in ((overlay, 'overlay'), (mask, 'label map')) if path is not None]
    check_outputs_spare_inputs(images, outputs)
    return jobs


def main(argv=None) -> None:
    args = parse_args(argv)
    logger = get_logger('cascade_clip')
    # every refusal comes before the model is loaded or anything written
    try:
        jobs = plan(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}')
    try:
        names = None if args.classes is None else parse_class_list(args.classes)
    except ValueError as e:
        raise SystemExit(f'error: --classes: {e}')
    try:
        # the vocabulary (and its text embeddings) is set once, for every image
        model = init_model(args.config, args.checkpoint, device=args.device, class_names=names)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}')
    names = list(model.CLASSES)
    bar = mmcv.ProgressBar(len(jobs), file=sys.stderr) if len(jobs) > 1 else None
    failed = []
    for image, overlay, mask in jobs:
        try:
            img = read_image(image)
        except (ValueError, FileNotFoundError) as e:
            if bar is not None:
                sys.stderr.write('\n')  # the warning on a line of its own, not after the bar
            print_log(f'skipped {image}: {e}', logger, level=logging.WARNING)
            failed.append(image)
        else:
            labels, _ = segment_image(model, img)
            try:
                if mask is not None:
                    write_label_map(mask, labels, len(names))
                if overlay is not None:
                    write_image(overlay, draw_segmentation(img, labels, names, model.PALETTE, args.opacity))
            except OSError as e:  # names the file (disk full, no permission, ...)
                raise SystemExit(f'error: {e}')
            if bar is None:
                print_log(f'{image}: classes present: {", ".join(legend_names(labels, names))}', logger)
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    if args.out_dir or args.out_mask_dir:
        written = [f'{what} in {d}' for what, d in (('overlays', args.out_dir),
                                                    ('label maps', args.out_mask_dir)) if d]
    else:
        written = [f'{what} {p}' for what, p in (('overlay', jobs[0][1]), ('label map', jobs[0][2])) if p]
    print_log(f'segmented {len(jobs) - len(failed)} of {len(jobs)} images ({len(names)} classes): '
              f'{" and ".join(written)}', logger)
    if failed:
        shown = ', '.join(failed[:5]) + (f', ... ({len(failed) - 5} more)' if len(failed) > 5 else '')
        raise SystemExit(f'error: {len(failed)} of {len(jobs)} images could not be read: {shown}')


if __name__ == '__main__':
    main()
