from .hooks import GradAllReduceOptimizerHook
from .runner import AtomicIterBasedRunner, atomic_save_checkpoint

__all__ = ['AtomicIterBasedRunner', 'GradAllReduceOptimizerHook', 'atomic_save_checkpoint']
