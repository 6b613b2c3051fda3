"""Config sections are checked before any work: unknown keys refused with "did you mean"."""
import glob
import os.path as osp
import re

import pytest
from mmcv import Config

import cascade_clip  # noqa: F401
from cascade_clip.apis import config_checks
from cascade_clip.apis.config_checks import check_config, check_overrides

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
CONFIGS = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True)
                 if '/_base_/' not in p)


def test_every_config_is_found():
    # the eight published configs, the demo and this project's extra ones
    assert len(CONFIGS) >= 12 and 'configs/demo/cascade_clip_tiny_synthetic.py' in CONFIGS
    assert 'configs/coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py' in CONFIGS


@pytest.mark.parametrize('path', CONFIGS)
@pytest.mark.parametrize('mode', ['train', 'test'])
def test_every_config_passes(path, mode):
    check_config(Config.fromfile(osp.join(ROOT, path)), mode)


# (option, key as written in the message, suggested key); one misspelling per section
MISSPELT = [
    ({'checkpoint_config.intervl': 5}, 'checkpoint_config', 'intervl', 'interval'),
    # an argument CheckpointHook forwards to runner.save_checkpoint
    ({'checkpoint_config.create_symlnk': False}, 'checkpoint_config', 'create_symlnk', 'create_symlink'),
    ({'evaluation.metirc': 'mIoU'}, 'evaluation', 'metirc', 'metric'),
    ({'evaluation.save_bst': 'mIoU'}, 'evaluation', 'save_bst', 'save_best'),
    ({'evaluation.pre_evl': True}, 'evaluation', 'pre_evl', 'pre_eval'),
    ({'log_config.intervall': 5}, 'log_config', 'intervall', 'interval'),
    ({'log_config.hooks': [dict(type='TextLoggerHook', by_epch=False)]}, r'log_config.hooks\[0\]',
     'by_epch', 'by_epoch'),
    ({'log_config.hooks': [dict(type='TensorboardLoggerHook', logdir='runs')]}, r'log_config.hooks\[0\]',
     'logdir', 'log_dir'),
    ({'runner.max_iter': 5}, 'runner', 'max_iter', 'max_iters'),
    ({'optimizer_config.grad_clp': None}, 'optimizer_config', 'grad_clp', 'grad_clip'),
    ({'optimizer_config': dict(type='GradientCumulativeOptimizerHook', cumulative_iter=2)},
     'optimizer_config', 'cumulative_iter', 'cumulative_iters'),
    ({'optimizer_config': dict(type='Fp16OptimizerHook', loss_scal=512.)}, 'optimizer_config',
     'loss_scal', 'loss_scale'),
    # an argument of this project's runner (the micro-batches per optimizer step)
    ({'runner.micro_batch': 2}, 'runner', 'micro_batch', 'micro_batches'),
    ({'lr_config.warmup_iter': 5}, 'lr_config', 'warmup_iter', 'warmup_iters'),
    ({'lr_config.powr': 1.0}, 'lr_config', 'powr', 'power'),
    ({'model.test_cfg.crop_bach': 2}, 'model.test_cfg', 'crop_bach', 'crop_batch'),
    ({'test_cfg': dict(mode='whole', mod='whole')}, 'test_cfg', 'mod', 'mode'),
    ({'data.samples_per_gpus': 2}, 'data', 'samples_per_gpus', 'samples_per_gpu'),
    ({'data.worker_per_gpu': 2}, 'data', 'worker_per_gpu', 'workers_per_gpu'),
    ({'data.persistant_workers': False}, 'data', 'persistant_workers', 'persistent_workers'),
    ({'data.train_dataloader': dict(shufle=False)}, 'data.train_dataloader', 'shufle', 'shuffle'),
    ({'data.test_dataloader': dict(prefetch_factr=2)}, 'data.test_dataloader', 'prefetch_factr',
     'prefetch_factor'),
]


@pytest.mark.parametrize('options,section,key,hint', MISSPELT, ids=[m[2] for m in MISSPELT])
def test_one_misspelling_per_section_gets_its_did_you_mean(options, section, key, hint):
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(options)
    with pytest.raises(ValueError) as info:
        check_config(cfg, 'train')
    message = str(info.value)
    assert message.startswith(f'config {DEMO}:')
    assert re.search(rf"\n  {section}: unknown key '{key}' \(did you mean '{hint}'\?\)", message), message
    assert message.count('\n') == 1  # only that one


def test_unknown_types_and_policies_get_their_did_you_mean():
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({'runner.type': 'IterBasedRuner', 'optimizer_config.type': 'OptimiserHook',
                         'lr_config.policy': 'ploy',
                         'log_config.hooks': [dict(type='TextLogerHook')]})
    with pytest.raises(ValueError) as info:
        check_config(cfg, 'train')
    message = str(info.value)
    for line in ("runner.type: unknown type 'IterBasedRuner' (did you mean 'IterBasedRunner'?)",
                 "optimizer_config.type: unknown type 'OptimiserHook' (did you mean 'OptimizerHook'?)",
                 "lr_config.policy: unknown policy 'ploy' (did you mean 'poly'?)",
                 "log_config.hooks[0].type: unknown type 'TextLogerHook' (did you mean 'TextLoggerHook'?)"):
        assert line in message, message


def test_tensorboard_and_wandb_hooks_with_their_keys(monkeypatch):
    """The logger hooks the docs show pass with their own keys; a hook whose package is not
    installed fails now, naming it (MMCV's would fail once the work dir and log are made)."""
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({'log_config.hooks': [
        dict(type='TextLoggerHook', by_epoch=False),
        dict(type='TensorboardLoggerHook', by_epoch=False, log_dir='runs/a', ignore_last=False),
        dict(type='WandbLoggerHook', by_epoch=False, commit=False, init_kwargs=dict(project='p'),
             log_artifact=False, define_metric_cfg={'val/mIoU': 'max'})]})
    monkeypatch.setattr(config_checks, '_installed', lambda package: True)
    check_config(cfg, 'train')
    monkeypatch.setattr(config_checks, '_installed', lambda package: package != 'wandb')
    with pytest.raises(ValueError) as info:
        check_config(cfg, 'train')
    assert str(info.value) == (f"config {DEMO}:\n  log_config.hooks[2]: WandbLoggerHook needs the "
                               f"package 'wandb', which is not installed (pip install wandb)")
    cfg.log_config.hooks[2]['init_kwarg'] = cfg.log_config.hooks[2].pop('init_kwargs')
    monkeypatch.setattr(config_checks, '_installed', lambda package: True)
    with pytest.raises(ValueError, match=re.escape("log_config.hooks[2]: unknown key 'init_kwarg' "
                                                   "(did you mean 'init_kwargs'?)")):
        check_config(cfg, 'train')


def test_keys_the_tools_set_and_keys_mmcv_ignores_are_refused():
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({'data.dist': True, 'runner.work_dir': '/tmp/x', 'log_config.by_epoch': False})
    with pytest.raises(ValueError) as info:
        check_config(cfg, 'train')
    message = str(info.value)
    assert "data: 'dist' must not be set: the tools give the data loader" in message
    assert "runner: unknown key 'work_dir'" in message
    assert "log_config: unknown key 'by_epoch'" in message and "go in its dict in hooks" in message


def test_test_mode_checks_what_the_test_reads():
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({'checkpoint_config.intervl': 5, 'model.test_cfg': dict(
        mode='slide', crop_size=(64, 64), stride=(96, 64))})
    with pytest.raises(ValueError) as info:
        check_config(cfg, 'test')
    message = str(info.value)
    assert 'model.test_cfg: stride (96, 64) is larger than crop_size (64, 64)' in message
    assert 'checkpoint_config' not in message  # tools/test.py builds no hooks
    with pytest.raises(ValueError, match=r"checkpoint_config: unknown key 'intervl'"):
        check_config(cfg, 'train')


@pytest.mark.parametrize('config,options,message', [
    # a variable of the config files: the key it set is what to override
    ('configs/coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py', {'novel_class': [1, 2]},
     r"novel_class: 'novel_class' is a variable of the config files, read only while they are "
     r"loaded, so overriding it changes nothing; override the key\(s\) it set: model.novel_class$"),
    ('configs/demo/cascade_clip_tiny_synthetic.py', {'img_norm_cfg.mean': [0, 0, 0]},
     r"override the key\(s\) it set: data.train.pipeline.3.mean, data.val.pipeline.1.transforms.2.mean, "
     r"data.test.pipeline.1.transforms.2.mean$"),
    # a key nothing has: the closest one
    ('configs/coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py', {'modle.pretrained': 'x'},
     r"modle.pretrained: no such key \(did you mean 'model'\?\)"),
])
def test_an_override_nothing_reads_is_refused_with_the_key_that_works(config, options, message):
    cfg = Config.fromfile(osp.join(ROOT, config))
    with pytest.raises(ValueError, match=message):
        check_overrides(cfg, options)


def test_overrides_of_read_keys_pass_and_out_indices_moves_the_model():
    """The keys a tool reads are accepted; the model's out indices follow the one that works."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/coco_171/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py'))
    assert 'out_indices' not in cfg  # no top-level variable to override by mistake
    with pytest.raises(ValueError, match=r"out_indices: no such key"):
        check_overrides(cfg, {'out_indices': [2, 4, 6, 8]})
    options = {'model.backbone.out_indices': [2, 4, 6, 8, 9, 10], 'data.samples_per_gpu': 2}
    check_overrides(cfg, options)
    cfg.merge_from_dict(options)
    assert cfg.model.backbone.out_indices == [2, 4, 6, 8, 9, 10]
