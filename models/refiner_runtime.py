"""The refiner (:mod:`models.refine`) as a worker runs it: what it reads for each sample, from
the labeller's probabilities and its causal HMM filter's beliefs (NumPy only: no Keras here).

>>> x = log_inputs(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
>>> x.dtype, x.astype(float).round(3).tolist()
(dtype('float32'), [[-0.693, -0.693, 0.0, -13.816]])
"""

from __future__ import annotations

import numpy as np

FLOOR = 1e-6
"""probabilities and beliefs below this are read as this (their logarithm stays finite)"""


def log_inputs(probs: np.ndarray, beliefs: np.ndarray) -> np.ndarray:
    """A refiner's input rows ``(T, 2K)``: the log of the labeller's probabilities and of its
    filter's beliefs ``(T, K)`` side by side, floored at :data:`FLOOR`, float32."""
    both = np.concatenate([probs, beliefs], axis=1)
    return np.log(np.maximum(both, FLOOR)).astype(np.float32)
