"""A hook for the killed-rank test: one process of a distributed run dies (SIGKILL, no
cleanup, as an out-of-memory kill would) at the start of a given iteration."""
import os
import os.path as osp
import signal
import time

from mmcv.runner import HOOKS, Hook, get_dist_info


@HOOKS.register_module()
class KillRankHook(Hook):
    """Kills process ``rank`` before iteration ``at_iter``, once rank 0 has written the
    checkpoint of the iteration before (with ``checkpoint_config.interval=1``).

    Rank 0 writes checkpoints after the step's collectives, so without the wait the other
    ranks can be one iteration ahead while it writes; the launcher would then stop rank 0
    mid-write, and the test would depend on that race instead of on the run's behaviour.
    """

    def __init__(self, rank: int, at_iter: int, timeout: float = 120.0):
        self.rank, self.at_iter, self.timeout = rank, at_iter, timeout

    def before_train_iter(self, runner):
        if get_dist_info()[0] != self.rank or runner.iter + 1 != self.at_iter:
            return
        previous = osp.join(runner.work_dir, f'iter_{self.at_iter - 1}.pth')
        deadline = time.monotonic() + self.timeout
        while not osp.isfile(previous) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
