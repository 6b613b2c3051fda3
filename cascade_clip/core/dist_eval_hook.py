"""Evaluation during training: the validation log line at the training iteration evaluated;
in distributed runs, the results gathered over the process group."""
import torch.distributed as dist
from mmcv.runner import HOOKS
from mmseg.core import DistEvalHook, EvalHook
from torch.nn.modules.batchnorm import _BatchNorm

from .collect import collect_results


class _LogTrainingIteration:
    """Logs the evaluation at the training iteration it ran after (MMSeg's hooks log the number
    of validation batches as its ``iter``)."""

    def evaluate(self, runner, results):
        # after_train_iter runs before the runner counts the iteration; after_train_epoch after
        runner.log_buffer.output['eval_iter_num'] = runner.iter if self.by_epoch else runner.iter + 1
        return super().evaluate(runner, results)


@HOOKS.register_module()
class TrainIterEvalHook(_LogTrainingIteration, EvalHook):
    """MMSeg's ``EvalHook`` (one process) whose log line names the training iteration."""


@HOOKS.register_module()
class GatherDistEvalHook(_LogTrainingIteration, DistEvalHook):
    """MMSeg's ``DistEvalHook`` gathering the results over the process group, its log line
    naming the training iteration; ``tmpdir`` and ``gpu_collect`` are accepted and unused."""
    # MMSeg's hook collects through pickles in a folder it then deletes, whatever else is in it

    def _do_evaluate(self, runner):
        if self.broadcast_bn_buffer:
            # as MMSeg's hook: DDP does not synchronise BatchNorm statistics, use rank 0's
            for module in runner.model.modules():
                if isinstance(module, _BatchNorm) and module.track_running_stats:
                    dist.broadcast(module.running_var, 0)
                    dist.broadcast(module.running_mean, 0)
        if not self._should_evaluate(runner):
            return
        from mmseg.apis import single_gpu_test  # imported here, as MMSeg's hook does (cycle)
        part = single_gpu_test(runner.model, self.dataloader, pre_eval=self.pre_eval)
        results = collect_results(part, len(self.dataloader.dataset))
        self.latest_results = results
        runner.log_buffer.clear()
        if runner.rank == 0:
            key_score = self.evaluate(runner, results)
            if self.save_best:
                self._save_ckpt(runner, key_score)
