"""Lookahead optimizer for Keras 3 (Zhang, Lucas, Hinton & Ba, 2019)."""

import os as _os

from keras_lookahead._namesake import warn_if_namesake_installed as _warn_if_namesake_installed

_warn_if_namesake_installed(_os.path.dirname(_os.path.abspath(__file__)))

from keras_lookahead.callbacks import (
    SwapSlowWeights,
    find_lookahead,
    find_lookaheads,
    restore_fast_weights,
    use_slow_weights,
)
from keras_lookahead.inner_state import register_first_moments
from keras_lookahead.lookahead import Lookahead
from keras_lookahead.radam import RAdam, Ranger

__version__ = "0.1.0"

__all__ = [
    "Lookahead",
    "RAdam",
    "Ranger",
    "SwapSlowWeights",
    "find_lookahead",
    "find_lookaheads",
    "register_first_moments",
    "restore_fast_weights",
    "use_slow_weights",
    "__version__",
]
