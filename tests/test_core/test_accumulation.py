"""Exact gradient accumulation (``GradientCumulativeOptimizerHook`` -> micro-batches of one
optimizer step): K x batch b accumulated equals batch K·b, on one and on two processes."""
import os
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmcv.utils import Config

from cascade_clip.apis.train import accumulation_steps, optimizer_hook_config
from cascade_clip.core import MicroBatchOptimizerHook
from tests.tiny import build, tiny_model_cfg


def meta():
    return dict(ori_shape=(64, 64, 3), img_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)


def no_dropout_model(**overrides):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(backbone=dict(drop_path_rate=0.0), **overrides)
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


class RecordingSGD(torch.optim.SGD):
    """SGD whose step records the gradients it sees."""

    def step(self, closure=None):
        self.seen = [p.grad.detach().clone() for g in self.param_groups for p in g['params']]
        return super().step(closure)


class LogBuffer:

    def update(self, d, n):
        pass


def accumulated_step(model, batch, micro_batches, **hook_args):
    """One runner iteration through MicroBatchOptimizerHook: the gradients of the step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = RecordingSGD(params, lr=0.0)
    runner = SimpleNamespace(model=model, optimizer=opt, meta={}, log_buffer=LogBuffer())
    hook = MicroBatchOptimizerHook(micro_batches=micro_batches, **hook_args)
    hook.before_run(runner)
    hook.before_train_iter(runner)
    runner.outputs = model.train_step(batch, opt)
    hook.after_train_iter(runner)
    hook.after_run(runner)
    return opt.seen, runner.outputs


def whole_batch_grads(model, batch):
    """Gradient of the loss of the whole batch in one forward (the reference)."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    losses = model.forward_train(batch['img'], batch['img_metas'], batch['gt_semantic_seg'])
    loss = losses['decode.loss_mask'] + losses['decode.loss_dice']
    grads = torch.autograd.grad(loss, params)
    return list(grads), float(loss.detach())


def rel_diff(a, b):
    num = sum((x - y).pow(2).sum() for x, y in zip(a, b)).sqrt()
    return float(num / sum(y.pow(2).sum() for y in b).sqrt())


def test_two_micro_batches_equal_batch_two():
    model = no_dropout_model()
    batch = make_batch(2, 0)
    ref, ref_loss = whole_batch_grads(model, batch)
    got, outputs = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5
    assert outputs['num_samples'] == 2 and model._micro_batching is None
    # logged: the loss of the whole batch (summed over micro-batches)
    assert outputs['log_vars']['loss'] == pytest.approx(ref_loss, rel=1e-5)
    # MMCV's stock accumulation normalises every micro-batch by its own mask count: not equal
    stock = [torch.zeros_like(g) for g in ref]
    params = [p for p in model.parameters() if p.requires_grad]
    for i in range(2):
        part = {k: v[i:i + 1] for k, v in batch.items()}
        losses = model.forward_train(part['img'], part['img_metas'], part['gt_semantic_seg'])
        grads = torch.autograd.grad((losses['decode.loss_mask'] + losses['decode.loss_dice']) / 2, params)
        stock = [s + g for s, g in zip(stock, grads)]
    assert rel_diff(stock, ref) > 1e-2


def test_four_images_in_two_micro_batches_and_fp16_scaler_path():
    model = no_dropout_model()
    batch = make_batch(4, 1)
    ref, _ = whole_batch_grads(model, batch)
    got, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5
    # loss scaling (the scaler of GradScalerOptimizerHook, on the CPU): unscaled gradients equal
    got, _ = accumulated_step(model, batch, 4, fp16=True, device='cpu', init_scale=2.**10)
    assert rel_diff(got, ref) < 1e-5


def test_transductive_micro_batches_count_pseudo_labelled_masks():
    model = no_dropout_model(self_training=True)
    batch = make_batch(2, 2)
    batch['gt_semantic_seg'][:, :, 40:] = 2  # unseen class: pseudo-labelled pixels
    ref, _ = whole_batch_grads(model, batch)
    got, _ = accumulated_step(model, batch, 2)
    assert rel_diff(got, ref) < 1e-5


def test_transductive_count_uses_the_training_pass_random_draws():
    """With dropout and drop-path active, the counting forward of each micro-batch and its
    training forward draw the same values: same pseudo-labels, and the loss is normalised by
    the masks it really sees."""
    torch.manual_seed(0)
    cfg = tiny_model_cfg(self_training=True, backbone=dict(drop_path_rate=0.5))
    cfg['decode_head']['dropout'] = 0.5
    model = build(cfg).train()
    batch = make_batch(2, 2)
    batch['gt_semantic_seg'][:, :, 16:] = 2  # unseen class: unlabelled, pseudo-labelled by the model
    head = model.decode_head
    seen_labels = {True: [], False: []}  # grad enabled (training pass) or not (counting pass)
    normalisers = []
    train_targets, forward_train = head.train_targets, head.forward_train

    def recording_targets(inputs, gt):
        pred, labels = train_targets(inputs, gt)
        seen_labels[torch.is_grad_enabled()].append(labels.clone())
        return pred, labels

    def recording_forward_train(*args, num_masks=None, **kwargs):
        normalisers.append(num_masks)
        return forward_train(*args, num_masks=num_masks, **kwargs)

    head.train_targets, head.forward_train = recording_targets, recording_forward_train
    accumulated_step(model, batch, 2)
    counted, trained = seen_labels[False], seen_labels[True]
    assert len(counted) == len(trained) == 2
    for c, t in zip(counted, trained):
        assert torch.equal(c, t)
    masks = sum(len(set(t[i].unique().tolist()) - {255}) for t in trained for i in range(len(t)))
    assert normalisers == [masks, masks]


def test_optimizer_config_mapping():
    cfg = Config(dict(model=dict(), optimizer_config=dict(type='GradientCumulativeOptimizerHook',
                                                          cumulative_iters=4, grad_clip=None)))
    assert accumulation_steps(cfg.optimizer_config) == 4
    assert optimizer_hook_config(cfg, 'cpu', True) == dict(
        type='MicroBatchOptimizerHook', micro_batches=4, allreduce=True, fp16=False, grad_clip=None)
    cfg.model.amp_dtype = 'fp16'
    assert optimizer_hook_config(cfg, 'cuda', False)['fp16'] is True
    cfg.optimizer_config = dict()
    assert accumulation_steps(cfg.optimizer_config) == 1
    assert optimizer_hook_config(cfg, 'cpu', True)['type'] == 'GradScalerOptimizerHook'
    # this project's hooks configured directly: their micro_batches enlarge the loaded batch
    cfg.optimizer_config = dict(type='GradScalerOptimizerHook', micro_batches=3, allreduce=True)
    assert accumulation_steps(cfg.optimizer_config) == 3
    assert optimizer_hook_config(cfg, 'cpu', True) == dict(cfg.optimizer_config)
    # ... and on several CPU processes they must average the gradients
    cfg.optimizer_config = dict(type='MicroBatchOptimizerHook', micro_batches=2)
    assert accumulation_steps(cfg.optimizer_config) == 2
    with pytest.raises(ValueError, match=r'MicroBatchOptimizerHook without allreduce=True on several '
                       r'CPU processes.*optimizer_config.allreduce=True'):
        optimizer_hook_config(cfg, 'cpu', True)
    assert optimizer_hook_config(cfg, 'cpu', False)['type'] == 'MicroBatchOptimizerHook'


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        model = no_dropout_model()
        full = make_batch(4, 3)
        mine = {k: v[2 * rank:2 * rank + 2] for k, v in full.items()}  # 2 images per rank
        got, _ = accumulated_step(model, mine, 2, allreduce=True)  # 2 micro-batches of 1
        torch.save(got, os.path.join(out_dir, f'grads{rank}.pt'))
    finally:
        dist.destroy_process_group()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_two_micro_batches_equal_batch_four():
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(2, free_port(), d), nprocs=2, join=True)
        got = [torch.load(os.path.join(d, f'grads{r}.pt'), weights_only=True) for r in range(2)]
    ref, _ = whole_batch_grads(no_dropout_model(), make_batch(4, 3))
    assert rel_diff(got[0], ref) < 1e-5
    assert rel_diff(got[1], ref) < 1e-5
