"""``NonFiniteLossHook``: stop training at the first NaN or infinite loss."""
import math
from typing import Dict, List, Tuple

import torch
from mmcv.runner import HOOKS, Hook

from ..utils.strict import strict_kwargs


@HOOKS.register_module()
@strict_kwargs
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` as soon as a loss term is NaN or infinite (register it above
    ``ABOVE_NORMAL``, e.g. ``'HIGH'``, to stop before the optimizer step)."""
    # the logged values are averaged over the ranks: every process stops at the same iteration

    def after_train_iter(self, runner) -> None:
        outputs = runner.outputs or {}
        log_vars: Dict[str, float] = outputs.get('log_vars') or {}
        bad = non_finite_terms(log_vars)
        if not bad:
            loss = outputs.get('loss')
            if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
                bad = [('loss', float(loss.detach().float().sum()))]
        if bad:
            # the named term is the first non-finite part of the loss, the total comes last
            name, value = bad[0]
            others = ', '.join(f'{k}={_fmt(v)}' for k, v in log_vars.items() if 'loss' in k)
            message = (f'{name} is {_fmt(value)} at iteration {runner.iter + 1} ({others}); '
                       f'training stopped before the optimizer step, no checkpoint was written '
                       f'for this iteration')
            runner.logger.error(message)
            raise FloatingPointError(message)


def non_finite_terms(log_vars: Dict[str, float]) -> List[Tuple[str, float]]:
    """The NaN or infinite entries of ``log_vars`` named '*loss*', the total ``loss`` last."""
    bad = [(k, float(v)) for k, v in log_vars.items() if 'loss' in k and not math.isfinite(float(v))]
    return sorted(bad, key=lambda kv: kv[0] == 'loss')


def _fmt(value: float) -> str:
    return 'nan' if math.isnan(value) else ('inf' if value == math.inf else
                                            '-inf' if value == -math.inf else f'{value:.4g}')
