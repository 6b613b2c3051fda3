"""Two CPU processes (Gloo) through DistributedDataParallel: the update equals one process on
the union batch, with the mask loss's normaliser (the number of masks) averaged over the ranks."""
import os
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.tiny import build, tiny_model_cfg


class _Buffer:

    def update(self, *args, **kwargs):
        pass


def _setup():
    """The tiny Cascade-CLIP (dropout off: eval mode), two images and their label maps."""
    torch.manual_seed(0)
    model = build(tiny_model_cfg())
    g = torch.Generator().manual_seed(1)
    model.set_vocabulary(model.class_names, model.base_class,
                         torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=-1))
    model.eval()  # no dropout / drop-path: both runs compute the same function
    img = torch.randn(2, 3, 64, 64, generator=g)
    gt = torch.zeros(2, 1, 64, 64, dtype=torch.long)  # image 0: one class (dataset id 0)
    gt[1, :, :, 20:40] = 1  # image 1: three classes (ids 0, 1, 3) and ignored pixels
    gt[1, :, :, 40:] = 3
    gt[1, :, :8] = 255
    return model, img, gt


def _step(model, img, gt):
    """One training step through the real path: the model wrapped as train_segmentor wraps it
    (DistributedDataParallel when a process group exists), train_step (SegLossPlus), then
    MMCV's OptimizerHook."""
    from mmcv.parallel import DataContainer
    from mmcv.runner import OptimizerHook
    from torch.nn.parallel import DistributedDataParallel

    from cascade_clip.apis import wrap_model
    distributed = dist.is_initialized()
    wrapped = wrap_model(model, 'cpu', distributed)
    assert isinstance(wrapped, DistributedDataParallel) == distributed
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    seen = {}

    class RecordingSGD(torch.optim.SGD):
        """SGD that records the gradients it steps with (the hook frees them after the step)."""

        def step(self, closure=None):
            seen.update({n: p.grad.clone() for n, p in named})
            return super().step(closure)

    optimizer = RecordingSGD([p for _, p in named], lr=0.5)
    metas = [dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)] * len(img)
    # as the data loader collates them: MMCV's DataContainers
    batch = dict(img=DataContainer([img], stack=True), img_metas=DataContainer([metas], cpu_only=True),
                 gt_semantic_seg=DataContainer([gt], stack=True))
    outputs = wrapped.train_step(batch, optimizer)
    runner = SimpleNamespace(model=wrapped, optimizer=optimizer, outputs=outputs, log_buffer=_Buffer())
    OptimizerHook().after_train_iter(runner)
    return {n: (seen[n], p.detach().clone()) for n, p in named}


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        model, img, gt = _setup()
        result = _step(model, img[rank:rank + 1], gt[rank:rank + 1])
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def relative_error(a: torch.Tensor, b: torch.Tensor, floor: float = 0.0) -> float:
    """max |a - b| / max |b|, the denominator at least ``floor``."""
    return float((a - b).abs().max() / b.abs().max().clamp(min=max(floor, 1e-30)))


def test_two_processes_average_gradients_like_one_process_on_both_images(tmp_path):
    out = str(tmp_path / 'rank0.pth')
    mp.spawn(_worker, args=(2, str(tmp_path / 'rendezvous'), out), nprocs=2, join=True)
    distributed = torch.load(out, weights_only=True)

    model, img, gt = _setup()
    single = _step(model, img, gt)
    assert distributed.keys() == single.keys() and len(single) > 10
    # softmax attention ignores a bias added to every key, so the key biases' gradients are
    # zero up to rounding (~1e-14): relative errors are taken against at least 1e-6 of the
    # largest gradient entry
    floor = 1e-6 * max(float(g.abs().max()) for g, _ in single.values())
    worst_grad = max(relative_error(distributed[k][0], single[k][0], floor) for k in single)
    # (the key biases start at zero and only move by those rounding-level gradients)
    floor = 1e-6 * max(float(p.abs().max()) for _, p in single.values())
    worst_param = max(relative_error(distributed[k][1], single[k][1], floor) for k in single)
    assert worst_grad < 1e-5, worst_grad
    assert worst_param < 1e-6, worst_param

    # the comparison can fail: averaging per-image gradients normalised by each image's own
    # mask count (1 and 3) instead of the mean count gives another update
    per_image = []
    for r in range(2):
        m, _, _ = _setup()
        per_image.append(_step(m, img[r:r + 1], gt[r:r + 1]))
    unreduced = {k: (per_image[0][k][0] + per_image[1][k][0]) / 2 for k in single}
    assert max(relative_error(unreduced[k], single[k][0], floor) for k in single) > 0.05
