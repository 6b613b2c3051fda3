"""``ResumableLoader``: a data loader whose position can be saved and restored exactly."""
from typing import Any, Dict, Iterator, Optional

import torch
from mmcv.utils import print_log

from .random_state import RandomStates, set_random_states

LoaderState = Dict[str, Any]


class _SamplerView:
    """The wrapped sampler without ``set_epoch`` (MMCV's ``IterLoader`` restarts its epoch count
    at 0 after a resume; ``ResumableLoader`` sets the epoch itself)."""

    def __init__(self, sampler):
        self._sampler = sampler

    def __getattr__(self, name: str):
        if name == 'set_epoch':
            raise AttributeError(name)
        return getattr(self._sampler, name)

    def __iter__(self):
        return iter(self._sampler)

    def __len__(self) -> int:
        return len(self._sampler)


class ResumableLoader:
    """A ``DataLoader`` that records its epoch, the batches yielded in it and the torch random
    state at the epoch's start; after ``resume_from`` the next epoch replays the saved one."""
    # the shuffle order, worker seeds and augmentations all draw from the random generators:
    # the consumed batches are made again and dropped, then the checkpoint's states restored

    def __init__(self, loader, logger='mmseg'):
        self.loader = loader
        self.logger = logger
        self.epoch = -1  # incremented when the first epoch starts
        self.consumed = 0
        self.epoch_start_torch: Optional[torch.Tensor] = None
        self._pending: Optional[LoaderState] = None
        self._states_after_skip: Optional[RandomStates] = None

    # the attributes MMCV's IterLoader and the hooks use
    @property
    def sampler(self):
        return _SamplerView(self.loader.sampler)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        # dataset, batch_size, ... of the wrapped loader (only called for missing attributes)
        if name == 'loader':
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> LoaderState:
        """``epoch``, ``consumed`` batches in it, ``epoch_start_torch`` random state."""
        return {'epoch': self.epoch, 'consumed': self.consumed,
                'epoch_start_torch': self.epoch_start_torch}

    def resume_from(self, state: LoaderState, states_after_skip: Optional[RandomStates] = None) -> None:
        """Make the next ``iter(self)`` continue the saved epoch, then set ``states_after_skip``."""
        for key in ('epoch', 'consumed', 'epoch_start_torch'):
            if key not in state:
                raise KeyError(f'loader state {sorted(state)} has no {key!r}')
        self._pending = state
        self._states_after_skip = states_after_skip

    def _set_sampler_epoch(self) -> None:
        if hasattr(self.loader.sampler, 'set_epoch'):
            self.loader.sampler.set_epoch(self.epoch)

    def __iter__(self) -> Iterator:
        # made here, not lazily: the seeds are drawn at the same point as by a plain DataLoader
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.epoch = int(state['epoch'])
            skip = int(state['consumed'])
            self._set_sampler_epoch()
            self.epoch_start_torch = state['epoch_start_torch'].clone()
            torch.set_rng_state(self.epoch_start_torch)
            it = iter(self.loader)
            if skip:
                print_log(f'resuming the data loader: epoch {self.epoch}, replaying the {skip} '
                          f'batch(es) already used in it', self.logger)
            for i in range(skip):
                try:
                    next(it)
                except StopIteration:
                    raise RuntimeError(
                        f'the checkpoint says {skip} batches of epoch {self.epoch} were used, '
                        f'but the data loader has only {i} (dataset or batch size changed?)') from None
            self.consumed = skip
            if self._states_after_skip is not None:
                set_random_states(self._states_after_skip)
                self._states_after_skip = None
        else:
            self.epoch += 1
            self.consumed = 0
            self._set_sampler_epoch()
            self.epoch_start_torch = torch.get_rng_state()
            it = iter(self.loader)
        return self._counting(it)

    def _counting(self, it: Iterator) -> Iterator:
        for batch in it:
            self.consumed += 1
            yield batch
