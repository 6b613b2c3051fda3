"""Exact gradient accumulation in the runner: a loaded batch split into K micro-batches, the
first K - 1 under DDP's ``no_sync()``, then one optimizer step, equals the K-times larger
batch; in one process and in two Gloo processes through DistributedDataParallel, with the
fp16 loss scaler, in the transductive setting and with a term averaged over other units."""
import logging
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmcv.parallel import DataContainer
from torch.nn.parallel import DistributedDataParallel

from mmseg.models.builder import LOSSES

from cascade_clip.apis import optimizer_hook_config, wrap_model
from cascade_clip.core import AtomicIterBasedRunner
from cascade_clip.models.losses import LossSum, SumLoss
from tests.tiny import build, tiny_model_cfg


@LOSSES.register_module(force=True)
class LabelledPixelTestLoss(SumLoss):
    """A term averaged over labelled pixels, as a researcher might add: the squared mask logit
    of the labelled class, upsampled nearest (unit 'pixels')."""

    def forward(self, pred_masks, label, ignore_index=255):
        up = torch.nn.functional.interpolate(pred_masks, size=label.shape[-2:], mode='nearest')
        valid = label != ignore_index
        picked = up.gather(1, label.clamp(max=up.shape[1] - 1).unsqueeze(1))[:, 0][valid]
        return {'loss_pixel': LossSum(picked.pow(2).sum(), int(valid.sum()), 'pixels')}


def with_pixel_term(**overrides):
    cfg = tiny_model_cfg(**overrides)
    cfg['decode_head']['loss_decode'] = [cfg['decode_head']['loss_decode'],
                                         dict(type='LabelledPixelTestLoss')]
    return cfg


def meta():
    return dict(ori_shape=(64, 64, 3), img_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)


def no_dropout_model(pixel_term=False, **overrides):
    torch.manual_seed(0)
    cfg = (with_pixel_term if pixel_term else tiny_model_cfg)(backbone=dict(drop_path_rate=0.0), **overrides)
    cfg['decode_head']['dropout'] = 0.0
    model = build(cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model.train()


def make_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, 3, 64, 64, generator=g)
    gt = torch.randint(0, 6, (n, 1, 64, 64), generator=g)
    # images with different numbers of classes, so that per-micro-batch counts would differ
    gt[0] = torch.where(gt[0] < 3, gt[0], torch.full_like(gt[0], 255))
    if n > 1:
        gt[1, :, :32] = 1
    return dict(img=img, img_metas=[meta() for _ in range(n)], gt_semantic_seg=gt)


def transductive(batch):
    batch['gt_semantic_seg'][:, :, 40:] = 2  # unseen class: pseudo-labelled pixels
    return batch


class RecordingSGD(torch.optim.SGD):
    """SGD whose step records the gradients it sees."""

    def step(self, closure=None):
        self.seen = [p.grad.detach().clone() for g in self.param_groups for p in g['params']]
        self.steps = getattr(self, 'steps', 0) + 1
        return super().step(closure)


class OneBatch:
    """What MMCV's IterLoader gives the runner: the batch as the data loader collates it."""
    epoch = 0

    def __init__(self, batch):
        self.batch = dict(img=DataContainer([batch['img']], stack=True),
                          img_metas=DataContainer([batch['img_metas']], cpu_only=True),
                          gt_semantic_seg=DataContainer([batch['gt_semantic_seg']], stack=True))

    def __next__(self):
        return self.batch


def accumulated_step(model, batch, micro_batches, amp_dtype=None, optimizer_config=None):
    """One runner iteration of AtomicIterBasedRunner with the hook train_segmentor chooses:
    the gradients of the optimizer step, the outputs, the runner and the wrapped model."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = RecordingSGD(params, lr=0.0)
    wrapped = wrap_model(model, 'cpu', dist.is_available() and dist.is_initialized())
    optimizer_config = optimizer_config or dict(type='GradientCumulativeOptimizerHook',
                                                cumulative_iters=micro_batches)
    hook_cfg, k = optimizer_hook_config(optimizer_config, amp_dtype)
    assert k == micro_batches
    runner = AtomicIterBasedRunner(model=wrapped, optimizer=opt, work_dir=None, meta={},
                                   logger=logging.getLogger('test_accumulation'), max_iters=1,
                                   micro_batches=k)
    runner.register_optimizer_hook(hook_cfg)
    runner.call_hook('before_run')
    runner.train(OneBatch(batch))
    assert opt.steps == 1  # one runner iteration = one optimizer step
    return opt.seen, runner.outputs, runner, wrapped


def batch_loss(model, batch):
    """The loss of a batch in one forward: each term's sum over its count in the batch."""
    losses = model.forward_train(batch['img'], batch['img_metas'], batch['gt_semantic_seg'])
    return sum(v.value / max(v.count, 1) for v in losses.values() if isinstance(v, LossSum))


def whole_batch_grads(model, batch):
    """Gradient of the loss of the whole batch in one forward (the reference)."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    loss = batch_loss(model, batch)
    return list(torch.autograd.grad(loss, params)), float(loss.detach())


def rel_diff(a, b):
    """Relative norm of the difference over all trainable parameters together (the key biases
    of softmax attention get rounding-level gradients, so no per-parameter comparison)."""
    num = sum((x - y).pow(2).sum() for x, y in zip(a, b)).sqrt()
    return float(num / sum(y.pow(2).sum() for y in b).sqrt())


def test_two_micro_batches_equal_batch_two():
    model = no_dropout_model()
    batch = make_batch(2, 0)
    ref, ref_loss = whole_batch_grads(model, batch)
    got, outputs, runner, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5
    assert outputs['num_samples'] == 2 and runner.iter == 1
    # logged: the loss of the whole batch (summed over micro-batches)
    assert outputs['log_vars']['loss'] == pytest.approx(ref_loss, rel=1e-5)
    # MMCV's stock accumulation normalises every micro-batch by its own mask count: not equal
    assert rel_diff(stock_accumulation(model, batch, 2), ref) > 1e-2


def stock_accumulation(model, batch, k):
    """MMCV's GradientCumulativeOptimizerHook: each micro-batch's own loss, divided by K."""
    params = [p for p in model.parameters() if p.requires_grad]
    stock = [torch.zeros_like(p) for p in params]
    n = len(batch['img_metas']) // k
    for i in range(k):
        part = {key: v[i * n:(i + 1) * n] for key, v in batch.items()}
        grads = torch.autograd.grad(batch_loss(model, part) / k, params)
        stock = [s + g for s, g in zip(stock, grads)]
    return stock


def test_a_term_averaged_over_other_units_accumulates_exactly():
    """A loss list with a per-labelled-pixel term beside the per-mask terms: each is averaged by
    its own unit's count over the whole batch (each unit's gradients kept apart)."""
    model = no_dropout_model(pixel_term=True)
    batch = make_batch(4, 5)
    ref, ref_loss = whole_batch_grads(model, batch)
    got, outputs, _, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5
    assert set(outputs['log_vars']) >= {'decode.loss_pixel', 'decode.loss_mask', 'loss'}
    assert outputs['log_vars']['loss'] == pytest.approx(ref_loss, rel=1e-5)
    assert rel_diff(stock_accumulation(model, batch, 2), ref) > 1e-3


def test_four_images_in_two_and_four_micro_batches_and_fp16_scaler_path():
    model = no_dropout_model()
    batch = make_batch(4, 1)
    ref, _ = whole_batch_grads(model, batch)
    got, _, _, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5
    # loss scaling (LossScaleOptimizerHook, the hook of model.amp_dtype='fp16'; its scaler runs
    # on the CPU, the model computes in fp32 since fp16 autocast is not for the CPU): every
    # micro-batch's backward is scaled, the step sees unscaled gradients
    got, _, runner, _ = accumulated_step(model, batch, 4, amp_dtype='fp16', optimizer_config=dict(
        type='GradientCumulativeOptimizerHook', cumulative_iters=4, loss_scale=dict(init_scale=2.**10)))
    assert rel_diff(got, ref) < 1e-5
    hook = runner._optimizer_hook()
    assert type(hook).__name__ == 'LossScaleOptimizerHook' and hook.loss_scaler.is_enabled()
    assert runner.meta['fp16']['loss_scaler']['scale'] == 2.**10


def test_transductive_micro_batches_count_pseudo_labelled_masks():
    model = no_dropout_model(self_training=True)
    batch = transductive(make_batch(2, 2))
    ref, _ = whole_batch_grads(model, batch)
    got, _, _, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5


def test_transductive_averages_by_the_masks_the_loss_saw():
    """With dropout and drop-path drawing (pseudo-labels depend on them), the step averages by
    the masks of the labels each micro-batch's loss really saw: no second forward pass."""
    torch.manual_seed(0)
    cfg = tiny_model_cfg(self_training=True, backbone=dict(drop_path_rate=0.5))
    cfg['decode_head']['dropout'] = 0.5
    model = build(cfg).train()
    batch = make_batch(2, 2)
    batch['gt_semantic_seg'][:, :, 16:] = 2  # unseen class: unlabelled, pseudo-labelled by the model
    head = model.decode_head
    seen, forwards = [], []
    losses = head.losses

    def recording(seg_logit, seg_label):
        out = losses(seg_logit, seg_label)
        seen.append((seg_label.clone(), float(out['loss_mask'].value + out['loss_dice'].value)))
        return out

    head.losses = recording
    forward = model.forward
    model.forward = lambda *a, **k: forwards.append(1) or forward(*a, **k)
    _, outputs, _, _ = accumulated_step(model, batch, 2)
    assert len(seen) == 2 and len(forwards) == 2  # one forward per micro-batch
    masks = sum(len(set(lab[i].unique().tolist()) - {255}) for lab, _ in seen for i in range(len(lab)))
    assert outputs['log_vars']['loss'] == pytest.approx(sum(v for _, v in seen) / masks, rel=1e-5)


def test_optimizer_config_mapping():
    acc = dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4, grad_clip=None)
    # one optimizer step per runner iteration, on what the micro-batches accumulated
    assert optimizer_hook_config(acc, None) == (
        dict(type='GradientCumulativeOptimizerHook', cumulative_iters=1, grad_clip=None), 4)
    assert optimizer_hook_config(acc, 'fp16') == (
        dict(type='LossScaleOptimizerHook', grad_clip=None), 4)
    assert optimizer_hook_config(dict(), None) == (dict(type='OptimizerHook'), 1)
    assert optimizer_hook_config(dict(loss_scale=512.), 'fp16') == (
        dict(type='LossScaleOptimizerHook', loss_scale=512.), 1)
    with pytest.raises(ValueError, match=r"optimizer_config.loss_scale=512.0 without fp16.*"
                       r"model.amp_dtype='fp16'"):
        optimizer_hook_config(dict(loss_scale=512.), 'bf16')
    with pytest.raises(ValueError, match=r"'Fp16OptimizerHook': the precision is model.amp_dtype"):
        optimizer_hook_config(dict(type='Fp16OptimizerHook'), 'fp16')


def test_micro_batches_refuse_a_hook_that_zeroes_the_gradients():
    model = no_dropout_model()
    runner = AtomicIterBasedRunner(model=wrap_model(model, 'cpu', False),
                                   optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                                   work_dir=None, logger=logging.getLogger('t'), max_iters=1,
                                   micro_batches=2)
    runner.register_optimizer_hook(dict(type='OptimizerHook'))
    with pytest.raises(ValueError, match=r'micro_batches=2 needs an optimizer hook that steps once '
                       r'per iteration.*got OptimizerHook'):
        runner.run([[make_batch(2, 0)]], [('train', 1)])


# ---------------------------------------------------------------- two Gloo processes, DDP
def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        results = {}
        full = make_batch(4, 3)
        mine = {k: v[2 * rank:2 * rank + 2] for k, v in full.items()}  # 2 images per rank
        for name, kwargs, micro in (
                ('plain', dict(), 1),
                ('micro', dict(), 2),  # 2 micro-batches of 1
                ('fp16_scaler', dict(amp_dtype='fp16', optimizer_config=dict(
                    type='GradientCumulativeOptimizerHook', cumulative_iters=2,
                    loss_scale=dict(init_scale=2.**10))), 2)):
            model = no_dropout_model()
            got, _, _, wrapped = _spied_step(model, mine, micro, **kwargs)
            results[name] = (got, isinstance(wrapped, DistributedDataParallel), wrapped.no_sync_calls)
        model = no_dropout_model(self_training=True)
        mine_t = {k: v[2 * rank:2 * rank + 2] for k, v in transductive(make_batch(4, 3)).items()}
        got, _, _, wrapped = _spied_step(model, mine_t, 2)
        results['transductive'] = (got, True, wrapped.no_sync_calls)
        got, _, _, wrapped = _spied_step(no_dropout_model(pixel_term=True), mine, 2)
        results['pixel_term'] = (got, True, wrapped.no_sync_calls)
        torch.save(results, os.path.join(out_dir, f'grads{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _spied_step(model, batch, micro, **kwargs):
    """accumulated_step, counting the runner's entries into DDP's no_sync()."""
    import contextlib

    from cascade_clip.apis import dist as dist_api
    calls = []
    original = DistributedDataParallel.no_sync

    @contextlib.contextmanager
    def counting(self):
        calls.append(1)
        with original(self):
            yield

    dist_api.MMDDP.no_sync = counting  # test spy on the class, removed below
    try:
        out = accumulated_step(model, batch, micro, **kwargs)
    finally:
        del dist_api.MMDDP.no_sync
    out[3].no_sync_calls = len(calls)
    return out


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_through_ddp_equal_one_process_on_the_union_batch():
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(2, free_port(), d), nprocs=2, join=True)
        got = [torch.load(os.path.join(d, f'grads{r}.pt'), weights_only=True) for r in range(2)]
    ref, _ = whole_batch_grads(no_dropout_model(), make_batch(4, 3))
    refs = dict(transductive=whole_batch_grads(no_dropout_model(self_training=True),
                                               transductive(make_batch(4, 3)))[0],
                pixel_term=whole_batch_grads(no_dropout_model(pixel_term=True), make_batch(4, 3))[0])
    for rank in range(2):
        assert set(got[rank]) == {'plain', 'micro', 'fp16_scaler', 'transductive', 'pixel_term'}
        for name, (grads, is_ddp, no_sync_calls) in got[rank].items():
            assert is_ddp, name  # the distributed model is torch's DistributedDataParallel
            assert rel_diff(grads, refs.get(name, ref)) < 1e-5, (rank, name)
            # K micro-batches: the first K - 1 under no_sync(), the last one synchronised
            assert no_sync_calls == (0 if name == 'plain' else 1), (rank, name)
    # the comparison can fail: each process averaging by its own images' masks (1 and 3 in
    # make_batch's first two images) instead of the mean count gives another gradient
    batch = make_batch(4, 3)
    per_process = [whole_batch_grads(no_dropout_model(), {k: v[2 * r:2 * r + 2] for k, v in batch.items()})[0]
                   for r in range(2)]
    assert rel_diff([(a + b) / 2 for a, b in zip(*per_process)], ref) > 1e-2
