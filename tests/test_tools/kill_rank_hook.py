"""A hook for the killed-rank test: one process of a distributed run dies (SIGKILL, no
cleanup, as an out-of-memory kill would) at the start of a given iteration."""
import os
import signal

from mmcv.runner import HOOKS, Hook, get_dist_info


@HOOKS.register_module()
class KillRankHook(Hook):

    def __init__(self, rank: int, at_iter: int):
        self.rank, self.at_iter = rank, at_iter

    def before_train_iter(self, runner):
        if get_dist_info()[0] == self.rank and runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)
