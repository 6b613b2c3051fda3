"""Summarise the offline demo: the trained model's metrics next to two references measured
on the same validation set - uniform random labels (chance) and the tiny CLIP alone
(argmax over classes of its dense embedding · class text embedding).

    python tools/demo_report.py CONFIG WORK_DIR
"""
import glob
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import Config, get_logger, print_log  # noqa: E402
from mmseg.datasets import build_dataset  # noqa: E402
from prettytable import PrettyTable  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.models.backbones import CLIPVisionTransformer  # noqa: E402


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
            (dense, ), _ = enc(x)
            s = torch.einsum('bdhw,kd->bkhw', dense, text)
            s = torch.nn.functional.interpolate(s, size=img.shape[:2], mode='bilinear', align_corners=False)
        preds.append(s.argmax(1)[0].numpy())
    return preds


def main():
    cfg_path, work_dir = sys.argv[1], sys.argv[2]
    logger = get_logger('cascade_clip.demo')
    cfg = Config.fromfile(cfg_path)
    files = sorted(glob.glob(osp.join(work_dir, 'eval_*.json')))
    if not files:
        raise SystemExit(f'no eval_*.json in {work_dir}: run tools/test.py --work-dir first')
    trained = json.load(open(files[-1]))['metric']
    ds = build_dataset(cfg.data.test)
    rng = np.random.RandomState(0)
    n = len(ds.CLASSES)
    quiet = get_logger('cascade_clip.quiet', log_level=40)
    chance = ds.evaluate([rng.randint(0, n, size=ds.get_gt_seg_map_by_idx(i).shape)
                          for i in range(len(ds))], logger=quiet)
    clip_only = ds.evaluate(clip_only_predictions(cfg, ds), logger=quiet)
    table = PrettyTable(['predictions', 'mIoU seen', 'mIoU unseen', 'hIoU', 'mIoU all'])
    for name, m in (('chance (uniform random labels)', chance), ('tiny CLIP alone (dense · text)', clip_only),
                    ('Cascade-CLIP (trained on seen classes)', trained)):
        table.add_row([name] + [f'{100 * m[k]:.1f}' for k in ('mIoU_seen', 'mIoU_unseen', 'hIoU', 'mIoU')])
    unseen = [ds.CLASSES[i] for i in ds.unseen_classes]
    print_log(f'validation set: {len(ds)} images, {n} classes, unseen: {", ".join(unseen)}\n'
              + table.get_string(), logger)


if __name__ == '__main__':
    main()
