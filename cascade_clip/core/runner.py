"""Runner whose checkpoints are written atomically."""
import os
import os.path as osp
import platform
import shutil

import mmcv
from mmcv.runner import RUNNERS, IterBasedRunner
from mmcv.runner.checkpoint import save_checkpoint


def atomic_save_checkpoint(model, filepath: str, optimizer=None, meta=None) -> None:
    """mmcv's save_checkpoint into a temporary file in the same folder, then an atomic rename:
    an interrupted save never leaves a truncated checkpoint under the final name."""
    tmp = f'{filepath}.tmp-{os.getpid()}'
    try:
        save_checkpoint(model, tmp, optimizer=optimizer, meta=meta)
        os.replace(tmp, filepath)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


@RUNNERS.register_module()
class AtomicIterBasedRunner(IterBasedRunner):
    """IterBasedRunner whose checkpoints are written atomically and resume exactly.

    ``iter_N.pth`` holds the state after N iterations and ``meta['iter'] == N``, so
    ``--resume-from iter_N.pth`` continues with iteration N + 1.
    """

    def save_checkpoint(self, out_dir, filename_tmpl='iter_{}.pth', meta=None, save_optimizer=True,
                        create_symlink=True):
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            raise TypeError(f'meta should be a dict or None, but got {type(meta)}')
        if self.meta is not None:
            meta.update(self.meta)
        # Checkpoints are saved by CheckpointHook.after_train_iter, after the optimizer step of
        # iteration self.iter + 1 but before the runner increments its counter. MMCV records
        # self.iter, so resuming would repeat that iteration; record the completed count.
        meta.update(epoch=self.epoch + 1, iter=self.iter + 1)
        filename = filename_tmpl.format(self.iter + 1)
        filepath = osp.join(out_dir, filename)
        optimizer = self.optimizer if save_optimizer else None
        atomic_save_checkpoint(self.model, filepath, optimizer=optimizer, meta=meta)
        if create_symlink:
            dst = osp.join(out_dir, 'latest.pth')
            if platform.system() != 'Windows':
                mmcv.symlink(filename, dst)
            else:
                shutil.copy(filepath, dst)
