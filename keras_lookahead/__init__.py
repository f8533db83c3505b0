"""Lookahead optimizer for Keras 3 (Zhang, Lucas, Hinton & Ba, 2019)."""

from keras_lookahead.inner_state import register_first_moments
from keras_lookahead.lookahead import Lookahead

__version__ = "0.1.0"

__all__ = ["Lookahead", "register_first_moments", "__version__"]
