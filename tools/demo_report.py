"""Summarise the offline demo: the trained model's metrics next to two references measured
on the same validation set - uniform random labels (chance) and the tiny CLIP alone
(argmax over classes of its dense embedding · class text embedding).

    python tools/demo_report.py CONFIG WORK_DIR

WORK_DIR is either one run (its newest ``eval_*.json``) or a ``tools/seeds.py`` work dir
(``seeds.json``): then the trained model and chance (one random draw per seed) are given as
mean ± std over the seeds (sample std, n - 1), with the trained model's per-seed rows; the
tiny CLIP alone is one fixed model, so it has no spread. The table also goes to
``WORK_DIR/demo_report.json``.
"""
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402
from mmseg.datasets import build_dataset  # noqa: E402
from prettytable import PrettyTable  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from seeds import aggregate, format_table  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.models.backbones import CLIPVisionTransformer  # noqa: E402
from cascade_clip.utils.config import read_config  # noqa: E402
from cascade_clip.utils.files import atomic_output  # noqa: E402
from cascade_clip.utils.results import newest_eval  # noqa: E402


def clip_only_predictions(cfg, dataset):
    bb = cfg.model.backbone
    enc = CLIPVisionTransformer(input_resolution=bb.input_resolution, patch_size=bb.patch_size,
                                width=bb.width, layers=bb.layers, heads=bb.heads,
                                output_dim=bb.output_dim, out_indices=[bb.layers - 1],
                                get_embeddings=True, pretrained=cfg.model.pretrained)
    enc.init_weights()
    enc.eval()
    text = torch.from_numpy(np.load(cfg.model.load_text_embedding))
    norm = cfg.img_norm_cfg
    mean, std = torch.tensor(norm.mean).view(1, 3, 1, 1), torch.tensor(norm.std).view(1, 3, 1, 1)
    preds = []
    for info in dataset.img_infos:
        img = mmcv.imread(osp.join(dataset.img_dir, info['filename']), channel_order='rgb')
        x = (torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] - mean) / std
        with torch.no_grad():
            dense = enc(x).dense
            s = torch.einsum('bdhw,kd->bkhw', dense, text)
            s = torch.nn.functional.interpolate(s, size=img.shape[:2], mode='bilinear', align_corners=False)
        preds.append(s.argmax(1)[0].numpy())
    return preds


KEYS = ('mIoU_seen', 'mIoU_unseen', 'hIoU', 'mIoU')


def cell(stats, key):
    m = stats[key]
    return f'{100 * m["mean"]:.1f} ± {100 * m["std"]:.1f}' if m['n'] > 1 else f'{100 * m["mean"]:.1f}'


def main():
    cfg_path, work_dir = sys.argv[1], sys.argv[2]
    logger = get_logger('cascade_clip.demo')
    cfg = read_config(cfg_path)
    seeds_file = osp.join(work_dir, 'seeds.json')
    if osp.isfile(seeds_file):
        runs = json.load(open(seeds_file))['seeds']
    else:
        found = newest_eval(work_dir, logger=logger)
        if found is None:
            raise SystemExit(f'no seeds.json nor eval_*.json in {work_dir}: run tools/seeds.py or '
                             'tools/test.py --work-dir first')
        runs = [dict(seed=None, **found['metric'])]
    ds = build_dataset(cfg.data.test)
    n = len(ds.CLASSES)
    quiet = get_logger('cascade_clip.quiet', log_level=40)
    chance = []
    for run in runs:
        rng = np.random.RandomState(run['seed'] or 0)
        chance.append(ds.evaluate([rng.randint(0, n, size=ds.get_gt_seg_map_by_idx(i).shape)
                                   for i in range(len(ds))], logger=quiet))
    clip_only = ds.evaluate(clip_only_predictions(cfg, ds), logger=quiet)
    rows = [('chance (uniform random labels)', aggregate(chance, KEYS)),
            ('tiny CLIP alone (dense · text)', aggregate([clip_only], KEYS)),
            ('Cascade-CLIP (trained on seen classes)', aggregate(runs, KEYS))]
    table = PrettyTable(['predictions', 'mIoU seen', 'mIoU unseen', 'hIoU', 'mIoU all'])
    for name, stats in rows:
        table.add_row([name] + [cell(stats, k) for k in KEYS])
    text = table.get_string()
    if len(runs) > 1:
        text += (f'\nmean ± std over {len(runs)} seeds (sample std); Cascade-CLIP per seed:\n'
                 + format_table(runs, rows[-1][1], KEYS))
    unseen = [ds.CLASSES[i] for i in ds.unseen_classes]
    print_log(f'validation set: {len(ds)} images, {n} classes, unseen: {", ".join(unseen)}\n' + text,
              logger)
    with atomic_output(osp.join(work_dir, 'demo_report.json')) as tmp, open(tmp, 'w') as f:
        json.dump(dict(rows), f, indent=1)


if __name__ == '__main__':
    main()
