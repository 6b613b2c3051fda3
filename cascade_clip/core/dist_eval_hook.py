"""Evaluation during training: the validation log line at the training iteration evaluated;
in distributed runs, the results gathered over the process group."""
import torch.distributed as dist
from mmcv.runner import HOOKS
from mmseg.core import DistEvalHook, EvalHook
from torch.nn.modules.batchnorm import _BatchNorm

from .collect import collect_results


class _LogTrainingIteration:
    """Logs the evaluation at the training iteration it ran after.

    MMSeg's hooks give the validation line of the log (``Iter(val) [N]``, and ``iter`` in
    ``WORK_DIR/<timestamp>.log.json``) the number of validation batches, so an evaluation
    after iteration 2000 on 500 images reads ``iter: 500``; TensorBoard and the other logger
    hooks log it at the training iteration. Here the json and text logs say it too, so the
    curves of ``tools/analyze_logs.py`` put each evaluation where it ran.
    """

    def evaluate(self, runner, results):
        # after_train_iter runs before the runner counts the iteration; after_train_epoch after
        runner.log_buffer.output['eval_iter_num'] = runner.iter if self.by_epoch else runner.iter + 1
        return super().evaluate(runner, results)


@HOOKS.register_module()
class TrainIterEvalHook(_LogTrainingIteration, EvalHook):
    """MMSeg's ``EvalHook`` (one process) whose log line names the training iteration."""


@HOOKS.register_module()
class GatherDistEvalHook(_LogTrainingIteration, DistEvalHook):
    """MMSeg's ``DistEvalHook`` whose processes hand their results to rank 0 over the process
    group (``collect_results``) instead of through files, and whose log line names the
    training iteration.

    MMSeg's hook collects with ``multi_gpu_test``: pickles in ``WORK_DIR/.eval_hook`` (or the
    ``tmpdir`` the config names), read back with ``pickle``, and that folder deleted afterwards
    with whatever a user had put in it. Here nothing is written and no folder is made or
    removed; ``tmpdir`` and ``gpu_collect`` are accepted for compatibility and not used.
    """

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
