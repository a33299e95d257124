"""Child process of the crash test: saves models into a directory until it is SIGKILLed.

Started from a multiprocessing forkserver that has imported this module, so that each of the
hundred-odd children starts in milliseconds instead of importing numpy again.
"""

from __future__ import annotations

from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np

from service.model.neuron import Neuron
from service.store import ModelStore
from tests.factories import training_metadata


def save_forever(directory: str, seed: int, ready: Event) -> None:
    store = ModelStore(Path(directory), keep=3)
    rng = np.random.default_rng(seed)
    training = training_metadata(iterations=1, initial_loss=0.2, duration_seconds=0.0)
    ready.set()
    for _ in range(100_000):  # bounded; the parent kills it within a second
        store.save(Neuron(rng.normal(size=(3, 1))), training)
