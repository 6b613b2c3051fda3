import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv import Config
from mmseg.models import build_segmentor

import cascade_clip  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PUBLISHED = [
    'voc_20/vpt_seg_zero_vit-b_512x512_20k_12_10.py',
    'voc_20/vpt_seg_zero_vit-b_512x512_10k_12_10_st.py',
    'context_59/vpt_seg_zero_vit-b_512x512_40k_12_10.py',
    'context_59/vpt_seg_zero_vit-b_512x512_20k_12_10_st.py',
    'coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py',
    'coco_171/vpt_seg_zero_vit-b_512x512_40k_12_100_multi_st.py',
    'cross_dataset/coco-to-voc.py',
    'cross_dataset/coco-to-context.py',
]
# beyond the paper: cross-dataset to ADE20K-150 and Pascal Context-60, zero-shot Context-60
EXTRA = [
    'cross_dataset/coco-to-ade150.py',
    'cross_dataset/coco-to-context60.py',
    'context_60/vpt_seg_zero_vit-b_512x512_40k_12_10.py',
]
# (classes, unseen, num_tokens, self_training, iterations, samples_per_gpu)
EXPECT = {
    'voc_20/vpt_seg_zero_vit-b_512x512_20k_12_10.py': (20, [15, 16, 17, 18, 19], 10, False, 20000, 4),
    'voc_20/vpt_seg_zero_vit-b_512x512_10k_12_10_st.py': (20, [15, 16, 17, 18, 19], 10, True, 10000, 8),
    'context_59/vpt_seg_zero_vit-b_512x512_40k_12_10.py': (59, [0, 2, 3, 7, 9, 13, 17, 19, 31, 37], 35, False, 40000, 4),
    'context_59/vpt_seg_zero_vit-b_512x512_20k_12_10_st.py': (59, [0, 2, 3, 7, 9, 13, 17, 19, 31, 37], 35, True, 20000, 4),
    'coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py': (171, [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160], 50, False, 80000, 4),
    'coco_171/vpt_seg_zero_vit-b_512x512_40k_12_100_multi_st.py': (171, [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160], 50, True, 40000, 4),
    'cross_dataset/coco-to-voc.py': (20, [], 50, False, 80000, 4),
    'cross_dataset/coco-to-context.py': (59, [], 50, False, 80000, 4),
    'cross_dataset/coco-to-ade150.py': (150, [], 50, False, 80000, 4),
    'cross_dataset/coco-to-context60.py': (60, [], 50, False, 80000, 4),
    'context_60/vpt_seg_zero_vit-b_512x512_40k_12_10.py': (60, [1, 3, 4, 8, 10, 14, 18, 20, 32, 38], 35, False, 40000, 4),
}


def test_all_published_configs_exist():
    assert all(osp.isfile(osp.join(ROOT, 'configs', p)) for p in PUBLISHED)


@pytest.mark.parametrize('path', PUBLISHED + EXTRA)
def test_published_config_loads_and_builds_full_size(path, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', path))
    n, unseen, tokens, st, iters, spg = EXPECT[path]
    m = cfg.model
    assert m.both_class == list(range(n))
    assert m.novel_class == unseen and sorted(m.base_class + m.novel_class) == list(range(n))
    assert cfg.data.test.unseen_classes == unseen and cfg.data.train.get('unseen_classes') is not None
    assert m.backbone.num_tokens == tokens and m.backbone.total_d_layer == 11
    assert m.backbone.out_indices == [5, 6, 7, 8, 9, 10]
    assert m.get('self_training', False) == st
    assert cfg.runner.max_iters == iters and cfg.data.samples_per_gpu == spg
    assert cfg.optimizer.lr == 2e-5 and cfg.optimizer.weight_decay == 0.01
    assert cfg.lr_config.warmup_iters == 1500 and cfg.lr_config.power == 0.9
    assert m.test_cfg.mode == 'slide' and tuple(m.test_cfg.stride) == (426, 426)
    assert cfg.custom_imports['imports'] == ['cascade_clip']
    # as in the published files (MMSeg's ResNet key, accepted and unused): built below
    assert m.backbone.style == 'pytorch' and m.text_encoder.style == 'pytorch'
    # a stand-in embedding file of the right shape: the real ones are made from ViT-B-16.pt
    emb = tmp_path / 'emb.npy'
    np.save(emb, np.ones((n, 512), np.float32) / np.sqrt(512))
    m.load_text_embedding = str(emb)
    m.pretrained = None
    with torch.device('meta'):
        model = build_segmentor(m)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bb = model.backbone
    assert bb.positional_embedding.shape == (1025, 768) and bb.proj_layers.shape == (6, 768, 512)
    assert bb.prompt_embeddings.shape == (1, tokens, 768)
    assert model.decode_head.q_projs[0].weight.shape == (512, 1024)
    if path.startswith('coco_171'):
        # the published COCO model has 193.1 M parameters
        assert abs(n_params / 1e6 - 193.1) < 0.1, n_params
    assert n_train < 0.3 * n_params


def test_text_embedding_files_are_outside_configs():
    assert not glob.glob(osp.join(ROOT, 'configs', '**', '*.npy'), recursive=True)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', PUBLISHED[4]))
    assert cfg.model.load_text_embedding.startswith('text_embeddings/')


def test_ade150_and_context60_configs_point_at_their_datasets():
    ade = Config.fromfile(osp.join(ROOT, 'configs', EXTRA[0]))
    assert ade.data.test.type == 'ZeroADE20KDataset150'
    assert ade.data.test.data_root == 'datasets/ADEChallengeData2016'
    assert ade.data.test.img_dir == 'images/validation' and ade.data.test.ann_dir == 'annotations/validation'
    assert ade.data.train.img_dir == 'images/training'
    assert ade.model.load_text_embedding == 'text_embeddings/ade150_multi.npy' and ade.model.multi_prompts
    for path in EXTRA[1:]:
        c60 = Config.fromfile(osp.join(ROOT, 'configs', path))
        assert c60.data.test.type == 'ZeroPascalContextDataset60'
        assert c60.data.test.split == 'ImageSets/SegmentationContext/val.txt'
        assert c60.model.load_text_embedding == 'text_embeddings/context60_multi.npy'
    # Context-60's unseen classes are Context-59's, shifted past background
    c59 = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/zero_pascal_context59.py'))
    assert c60.model.novel_class == [i + 1 for i in c59.novel_class]


@pytest.mark.parametrize('path,typ,n,root,ann,emb', [
    ('cross_dataset/coco-to-ade847.py', 'ZeroADE20KDataset847', 847, 'datasets/ADE20K_2021_17_01',
     'annotations_detectron2/validation', 'text_embeddings/ade847_multi.npy'),
    ('cross_dataset/coco-to-pc459.py', 'ZeroPascalContextDataset459', 459, 'datasets/VOCdevkit/VOC2010',
     'annotations_detectron2/pc459_val', 'text_embeddings/pc459_multi.npy'),
    ('cross_dataset/coco-to-voc21.py', 'ZeroPascalVOCDataset21', 21, 'datasets/VOCdevkit/VOC2012',
     'SegmentationClass', 'text_embeddings/voc21_multi.npy')])
def test_open_vocabulary_row_configs(path, typ, n, root, ann, emb, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', path))
    t = cfg.data.test
    assert (t.type, t.data_root, t.ann_dir, t.unseen_classes) == (typ, root, ann, [])
    m = cfg.model
    assert m.both_class == m.base_class == list(range(n)) and m.novel_class == []
    assert m.load_text_embedding == emb and m.multi_prompts and cfg.cross_dataset
    assert m.backbone.num_tokens == 50 and m.test_cfg.mode == 'slide'
    # the evaluation-only sets define no training split
    assert ('train' in cfg.data) == (n == 21)
    np.save(tmp_path / 'emb.npy', np.ones((n, 512), np.float32) / np.sqrt(512))
    m.load_text_embedding = str(tmp_path / 'emb.npy')
    m.pretrained = None
    with torch.device('meta'):
        model = build_segmentor(m)
    assert len(model.vocabulary) == n


def test_voc21_split_is_voc20s_shifted_past_background():
    v20 = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/zero_voc12_20_aug.py'))
    v21 = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/zero_voc12_21.py'))
    assert v21.novel_class == [i + 1 for i in v20.novel_class]
    assert v21.data.test.split == v20.data.test.split and v21.data.test.type == 'ZeroPascalVOCDataset21'
