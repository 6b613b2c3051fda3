"""The process's random states (python, numpy, torch CPU and CUDA) as tensors and plain values,
which ``torch.load(weights_only=True)`` reads from a checkpoint without an allow-list."""
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

RandomStates = Dict[str, Any]


def get_random_states() -> RandomStates:
    """The current random states of python, numpy, torch's CPU and (if initialised) GPU."""
    version, mt, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return {
        'python': (int(version), tuple(int(v) for v in mt),
                   None if gauss_next is None else float(gauss_next)),
        'numpy': {'bit_generator': str(name), 'key': torch.from_numpy(key.astype(np.int64)),
                  'pos': int(pos), 'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'torch': torch.get_rng_state(),
        'cuda': cuda,
    }


def set_random_states(states: RandomStates) -> None:
    """Restore states made by ``get_random_states`` (the CUDA one only when CUDA is available)."""
    version, mt, gauss_next = states['python']
    random.setstate((int(version), tuple(int(v) for v in mt), gauss_next))
    np_state = states['numpy']
    np.random.set_state((np_state['bit_generator'], np_state['key'].numpy().astype(np.uint32),
                         int(np_state['pos']), int(np_state['has_gauss']),
                         float(np_state['cached_gaussian'])))
    torch.set_rng_state(states['torch'].cpu())
    cuda: Optional[torch.Tensor] = states.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda.cpu())
