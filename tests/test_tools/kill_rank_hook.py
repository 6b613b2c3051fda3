"""Hooks for the killed-rank test: one process of a distributed run dies (SIGKILL, no
cleanup, as an out-of-memory kill would) at the start of a given iteration, while rank 0 is
slow to write the checkpoint of the iteration before."""
import os
import signal
import time

from mmcv.runner import HOOKS, Hook, get_dist_info


@HOOKS.register_module()
class KillRankHook(Hook):

    def __init__(self, rank: int, at_iter: int):
        self.rank, self.at_iter = rank, at_iter

    def before_train_iter(self, runner):
        if get_dist_info()[0] == self.rank and runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class SlowRank0Hook(Hook):
    """Rank 0 pauses after iteration ``at_iter``, before the checkpoint hook (registered with
    priority ABOVE_NORMAL): the other ranks reach the next iteration first, unless they wait
    for the checkpoint."""

    def __init__(self, at_iter: int, seconds: float):
        self.at_iter, self.seconds = at_iter, seconds

    def after_train_iter(self, runner):
        if get_dist_info()[0] == 0 and runner.iter + 1 == self.at_iter:
            time.sleep(self.seconds)
