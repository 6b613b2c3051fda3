"""Loss scaling for fp16 training through MMCV's Fp16OptimizerHook family, and the hook that
records the train state every checkpoint stores."""
from typing import Any, Dict, List, Optional, Union

import torch
import torch.distributed as dist
from mmcv.runner import HOOKS, GradientCumulativeFp16OptimizerHook, Hook

from ..utils.strict import strict_kwargs


@HOOKS.register_module()
@strict_kwargs
class LossScaleOptimizerHook(GradientCumulativeFp16OptimizerHook):
    """fp16 loss scaling, one optimizer step per runner iteration.

    MMCV's ``GradientCumulativeFp16OptimizerHook`` with ``cumulative_iters=1``: scale the loss,
    back-propagate (adding to the gradients the runner's micro-batches already left, see
    ``AtomicIterBasedRunner``), unscale, clip, step, update the scale, zero the gradients; the
    scaler's state goes to ``runner.meta['fp16']['loss_scaler']``, which checkpoints keep and
    resuming restores. Two differences:

    - the scaler is ``torch.amp.GradScaler`` for the device of the model's parameters (MMCV
      builds a CUDA one, which disables itself on a CPU model: no scaling at all);
    - the model is not wrapped with ``wrap_fp16_model``: its precision is ``model.amp_dtype``
      (``CascadeCLIP`` autocasts itself), and MMCV's ``@auto_fp16`` must not autocast again.

    Args:
        grad_clip: as ``OptimizerHook``.
        loss_scale: as ``Fp16OptimizerHook``: 'dynamic', a float (static scale) or a dict of
            ``GradScaler`` arguments.
    """

    def __init__(self, grad_clip: Optional[dict] = None,
                 loss_scale: Union[float, str, dict] = 'dynamic'):
        # not MMCV's __init__: it builds a CUDA scaler (built here in before_run)
        self.grad_clip = grad_clip
        self.detect_anomalous_params = False
        self.cumulative_iters = 1
        self.divisible_iters = 0
        self.remainder_iters = 0
        self.initialized = False
        if loss_scale == 'dynamic':
            self._scaler_args: Dict[str, Any] = {}
            self._scale_update_param = None
        elif isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            self._scaler_args = dict(init_scale=float(loss_scale))
            self._scale_update_param = float(loss_scale)
        elif isinstance(loss_scale, dict):
            self._scaler_args = dict(loss_scale)
            self._scale_update_param = None
        else:
            raise ValueError(f'loss_scale must be "dynamic", a number or a dict of GradScaler '
                             f'arguments, got {loss_scale!r}')
        self.loss_scaler: Optional[torch.amp.GradScaler] = None

    def before_run(self, runner) -> None:
        device = next(runner.model.parameters()).device.type
        self.loss_scaler = torch.amp.GradScaler(device, **self._scaler_args)
        meta = runner.meta or {}
        state = (meta.get('fp16') or {}).get('loss_scaler')
        if state is None:  # checkpoints of earlier versions of this project
            state = (meta.get('hook_msgs') or {}).get('grad_scaler')
        if state:
            self.loss_scaler.load_state_dict(state)


@HOOKS.register_module()
@strict_kwargs
class TrainStateHook(Hook):
    """Records the train state of every rank after each iteration's forward pass.

    Registered by ``AtomicIterBasedRunner`` with priority ``VERY_HIGH``: its
    ``after_train_iter`` runs before every other hook's (the non-finite-loss check, the
    optimizer step, the checkpoint, the evaluation), so a checkpoint saved in this iteration
    stores the random states as they were when the iteration's computation ended. The
    backward pass and the optimizer step draw no random numbers, so these are also the states
    of the next iteration's start.

    In a distributed run every rank's state is gathered to every rank (a collective, hence
    done here on every rank, not in the rank-0-only save): ``ranks`` is then the list of all
    ranks' states, whichever hook saves a checkpoint. A few tens of kB per iteration.
    """

    def __init__(self):
        self.iter: Optional[int] = None  # runner.iter of the recorded iteration
        self.local: Optional[Dict[str, Any]] = None  # this rank's state
        self.ranks: List[Dict[str, Any]] = []  # every rank's, in rank order

    def after_train_iter(self, runner) -> None:
        state = runner.local_train_state()
        ranks = [state]
        if runner.world_size > 1:
            ranks = [None] * runner.world_size
            dist.all_gather_object(ranks, state)
        self.iter, self.local, self.ranks = runner.iter, state, ranks
