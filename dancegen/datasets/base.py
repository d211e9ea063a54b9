"""What every dataset loader produces: `Sequence`s in the canonical form, listed by a `Dataset`.

A loader module registers one `open` function per dataset kind with `@register(kind, detect)`.
`open` checks the folder (a missing file is a `UserError` naming it) and returns a `Dataset`
that lists sequence names and loads each one on demand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import UserError
from ..motion import Motion


@dataclass
class Sequence:
    """One dance take: canonical motion, the song it was danced to and where in the song it starts."""

    name: str
    motion: Motion
    song: Path | None = None  # audio file; None when the dataset has none (Motorica)
    offset: float = 0.0  # song time, seconds, of motion frame 0
    style: str | None = None
    # Sequences of one group share a song or capture and always go to the same split; None means
    # the song file's content decides (or the sequence is its own group when it has no song).
    group: str | None = None
    # Modalities that come precomputed with the dataset, frame-aligned with `motion` (T, D).
    features: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Dataset:
    kind: str
    root: Path
    names: list[str]
    load: Callable[[str], Sequence] = field(repr=False)
    styles: dict[str, str | None] = field(default_factory=dict)  # name -> style, known without loading
    # name -> the files a sequence is made from, so preparation can tell when nothing changed.
    sources: Callable[[str], list[Path]] | None = field(default=None, repr=False)
    # The dataset's official split ({"train": [...], ...}), used instead of a split by song when given.
    splits: dict[str, list[str]] | None = None
    # The modality ("motion" or "music") of each feature the dataset ships in `Sequence.features`.
    feature_modalities: dict[str, str] = field(default_factory=dict)
    # Whether a style danced to a single song still gets a test song (then it has none in train).
    test_every_style: bool = True

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Sequence]:
        return (self.load(n) for n in self.names)


Opener = Callable[[Path], Dataset]
_REGISTRY: dict[str, tuple[Opener, Callable[[Path], bool]]] = {}


def register(kind: str, detect: Callable[[Path], bool]):
    """Register `open(root) -> Dataset` for `kind`; `detect(root)` says whether a folder looks like it."""

    def wrap(opener: Opener) -> Opener:
        _REGISTRY[kind] = (opener, detect)
        return opener

    return wrap


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def open_dataset(kind: str, root: str | os.PathLike) -> Dataset:
    root = Path(root)
    if kind not in _REGISTRY:
        raise UserError(None, f"unknown dataset kind {kind!r}; known kinds: {', '.join(kinds())}")
    if not root.is_dir():
        raise UserError(root, "no such dataset folder")
    return _REGISTRY[kind][0](root)


def detect_kind(root: str | os.PathLike) -> str:
    root = Path(root)
    if not root.exists():
        raise UserError(root, "no such file or folder")
    found = [k for k, (_, detect) in _REGISTRY.items() if detect(root)]
    if not found:
        raise UserError(root, f"not a dataset dancegen knows ({', '.join(kinds())})")
    return found[0]
