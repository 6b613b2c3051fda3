"""One owner of precision: MMSeg's fp16 switches translated onto model.amp_dtype or refused."""
import pytest
from mmcv.utils import Config

from cascade_clip.apis import resolve_precision, train_segmentor


def cfg_with(**kw):
    return Config(dict(dict(model=dict(type='CascadeCLIP'), optimizer_config=dict(grad_clip=None)), **kw))


def test_cfg_fp16_becomes_amp_dtype_with_its_loss_scale():
    cfg = cfg_with(fp16=dict(loss_scale=512.))
    assert resolve_precision(cfg, logger='silent') == 'fp16'
    assert cfg.model.amp_dtype == 'fp16' and 'fp16' not in cfg
    assert cfg.optimizer_config == dict(grad_clip=None, loss_scale=512.)
    assert resolve_precision(cfg, logger='silent') == 'fp16'  # nothing left to translate


def test_mmcv_fp16_hook_types_become_amp_dtype():
    cfg = cfg_with(optimizer_config=dict(type='GradientCumulativeFp16OptimizerHook',
                                         cumulative_iters=2, loss_scale='dynamic'))
    resolve_precision(cfg, logger='silent')
    assert cfg.model.amp_dtype == 'fp16'
    assert cfg.optimizer_config == dict(type='GradientCumulativeOptimizerHook', cumulative_iters=2,
                                        loss_scale='dynamic')
    cfg = cfg_with(optimizer_config=dict(type='Fp16OptimizerHook'))
    resolve_precision(cfg, logger='silent')
    assert cfg.optimizer_config.type == 'OptimizerHook' and cfg.model.amp_dtype == 'fp16'


def test_conflicting_precision_is_refused_and_nothing_is_changed():
    cfg = cfg_with(fp16=dict(loss_scale=512.))
    cfg.model.amp_dtype = 'bf16'
    with pytest.raises(ValueError, match=r"fp16=\{'loss_scale': 512.0\} asks for fp16 training, but "
                       r"model.amp_dtype='bf16': the precision of a run is set by model.amp_dtype "
                       r"alone; remove fp16 or set model.amp_dtype='fp16'"):
        resolve_precision(cfg, logger='silent')
    assert cfg.fp16 == dict(loss_scale=512.) and cfg.model.amp_dtype == 'bf16'
    # no fp16 switch: amp_dtype as given
    assert resolve_precision(cfg_with(), logger='silent') is None


def test_train_segmentor_refuses_an_untranslated_cfg_fp16():
    import torch
    cfg = cfg_with(fp16=dict(loss_scale=512.), log_level='INFO')
    with pytest.raises(ValueError, match=r"cfg.fp16 is MMSeg's fp16 switch; here the precision is "
                       r"model.amp_dtype: set model.amp_dtype='fp16'"):
        train_segmentor(torch.nn.Linear(1, 1), [], cfg)
