"""Loss scaling for fp16 training through MMCV's Fp16OptimizerHook family."""
from typing import Any, Dict, Optional, Union

import torch
from mmcv.runner import HOOKS, GradientCumulativeFp16OptimizerHook

from ..utils.strict import strict_kwargs


@HOOKS.register_module()
@strict_kwargs
class LossScaleOptimizerHook(GradientCumulativeFp16OptimizerHook):
    """MMCV's ``GradientCumulativeFp16OptimizerHook`` with ``cumulative_iters=1``, its scaler on
    the parameters' device and no ``wrap_fp16_model`` (the model autocasts itself).

    Args:
        grad_clip: as ``OptimizerHook``.
        loss_scale: 'dynamic', a float (static scale) or a dict of ``GradScaler`` arguments.
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
