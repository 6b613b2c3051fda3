"""Class text embeddings from a CLIP checkpoint, as the configs' ``load_text_embedding`` reads.

    python tools/build_text_embeddings.py --clip clip_pretrain/ViT-B-16.pt \\
        {--dataset coco_stuff|voc20|voc21|context59|context60|pc459|ade150|ade847 | --classes "a,b,c" | --classes-file FILE} \\
        --template {single,multi} --out FILE.npy
    python tools/build_text_embeddings.py --clip clip_pretrain/ViT-B-16.pt --published [--out-dir text_embeddings]

single = "a photo of a {name}"; multi = the mean of the L2-normalised embeddings of 15
templates, re-normalised. Rows are float32, L2-normalised, in the class order given.
``--published`` writes the three files the published configs read.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

from cascade_clip.models.vocabulary import check_class_names  # noqa: E402
from cascade_clip.utils.vocabulary_names import parse_class_list  # noqa: E402
from cascade_clip.utils.files import atomic_output  # noqa: E402
from cascade_clip.clip import MULTI_TEMPLATES, SINGLE_TEMPLATE  # noqa: E402
from cascade_clip.models.backbones import CLIPTextEncoder  # noqa: E402
from cascade_clip.clip.text_embeddings import compute_text_embeddings  # noqa: E402
from cascade_clip.datasets import (ZeroADE20KDataset150, ZeroADE20KDataset847,  # noqa: E402
                                   ZeroCOCOStuffDataset, ZeroPascalContextDataset60,
                                   ZeroPascalContextDataset459, ZeroPascalVOCDataset20,
                                   ZeroPascalVOCDataset21, ZeroPascalVOCDataset59)

DATASETS = {  # --dataset name -> dataset class (its CLASSES, in label order)
    'coco_stuff': ZeroCOCOStuffDataset,
    'voc20': ZeroPascalVOCDataset20,
    'context59': ZeroPascalVOCDataset59,
    'context60': ZeroPascalContextDataset60,
    'ade150': ZeroADE20KDataset150,
    'voc21': ZeroPascalVOCDataset21,
    'pc459': ZeroPascalContextDataset459,
    'ade847': ZeroADE20KDataset847,
}
PUBLISHED = {  # file -> (dataset, template)
    'coco_stuff_multi.npy': ('coco_stuff', 'multi'),
    'voc20_single.npy': ('voc20', 'single'),
    'context59_multi.npy': ('context59', 'multi'),
}


def dataset_classes(name: str):
    return list(DATASETS[name].CLASSES)


def build(encoder, names, template, batch_size, logger):
    templates = MULTI_TEMPLATES if template == 'multi' else (SINGLE_TEMPLATE, )
    total = len(names) * len(templates)
    bar = mmcv.ProgressBar(total) if total > batch_size else None
    done = [0]

    def progress(n):
        if bar is not None:
            for _ in range(n - done[0]):
                bar.update()
            done[0] = n

    emb = compute_text_embeddings(encoder, names, templates, encoder.context_length,
                                  batch_size=batch_size, progress=progress)
    if bar is not None:
        sys.stdout.write('\n')
    return emb.cpu().numpy().astype(np.float32)


def save(arr, path, logger):
    # whole or not at all (a full disk names the file); a file object: no .npy appended
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        np.save(f, arr)
    print_log(f'wrote {path}: {arr.shape[0]} classes x {arr.shape[1]}', logger)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--clip', required=True, help='CLIP checkpoint (e.g. clip_pretrain/ViT-B-16.pt)')
    src = parser.add_mutually_exclusive_group()
    src.add_argument('--dataset', choices=list(DATASETS),
                     help='class names of a dataset, in its label order')
    src.add_argument('--classes', help='comma-separated class names; quote a name that holds a '
                     'comma: \'"ice cream, vanilla",dog\'')
    src.add_argument('--classes-file', help='a file with one class name per line (or commas, '
                     'quoted as in CSV)')
    src.add_argument('--published', action='store_true',
                     help='write the three files the published configs read into --out-dir')
    parser.add_argument('--template', choices=['single', 'multi'], default='single')
    parser.add_argument('--out', help='output .npy file')
    parser.add_argument('--out-dir', default='text_embeddings')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--heads', type=int, default=None, help='text heads (default: width // 64)')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip')
    if not args.published and not (args.dataset or args.classes or args.classes_file):
        parser.error('give --dataset, --classes, --classes-file or --published')
    if not args.published and not args.out:
        parser.error('--out is required')
    encoder = CLIPTextEncoder.from_clip(args.clip, heads=args.heads).to(args.device)
    if args.published:
        for fname, (dataset, template) in PUBLISHED.items():
            arr = build(encoder, dataset_classes(dataset), template, args.batch_size, logger)
            save(arr, osp.join(args.out_dir, fname), logger)
        return
    if args.dataset:
        names, source = dataset_classes(args.dataset), f'--dataset {args.dataset}'
    elif args.classes is not None:
        names, source = parse_class_list(args.classes), '--classes'
    else:
        if not osp.isfile(args.classes_file):
            raise SystemExit(f'class file not found: {args.classes_file}')
        names, source = parse_class_list(open(args.classes_file).read()), args.classes_file
    try:
        check_class_names(names, source)
    except ValueError as e:
        raise SystemExit(str(e))
    save(build(encoder, names, args.template, args.batch_size, logger), args.out, logger)


if __name__ == '__main__':
    main()
