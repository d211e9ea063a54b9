"""Dataset loaders: each turns a dataset folder into `Sequence`s of canonical `Motion`.

Importing this package registers every loader below.
"""

from .base import Dataset, Sequence, detect_kind, kinds, open_dataset, register

# Loader modules register themselves on import.
from . import aist, bvh_pairs, dance_with_melody, motorica  # noqa: E402,F401

__all__ = ["Dataset", "Sequence", "open_dataset", "detect_kind", "kinds", "register"]
