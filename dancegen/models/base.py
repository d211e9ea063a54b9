"""The one model interface: every model family, and the benchmark's baselines, implement it.

A model takes `Music` (a song span's features at a frame rate) and returns a `Motion`:

    motion = model.generate(music, seed_motion=None, length=None, seed=0, **controls)

Families register a class by name with `@register_model("name")`; `load_model` builds a
registered model by name, or a saved one from a folder (safetensors weights + config.json).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from ..motion import Motion


@dataclass
class Music:
    """Features of a span of a song, frame-aligned at `fps` (frame k is song time start + k / fps)."""

    features: dict[str, np.ndarray]  # recipe or dataset feature name -> (T, D)
    fps: float
    song: Path | None = None
    start: float = 0.0
    style: str | None = None  # the style asked for, when known
    beats: np.ndarray | None = field(default=None, repr=False)  # beat times in seconds from `start`

    @property
    def num_frames(self) -> int:
        return min((len(x) for x in self.features.values()), default=0)


class DanceModel:
    """Base of every model. Subclasses set `name` and implement `generate`; a model that reads
    music says which features it needs (`music_features`, recipe names) and at which `fps`."""

    name: str = "model"
    fps: float = 30.0
    music_features: tuple[str, ...] = ()

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, **controls: Any) -> Motion:
        raise NotImplementedError


_MODELS: dict[str, Callable[..., DanceModel]] = {}


def register_model(name: str):
    def wrap(factory):
        _MODELS[name] = factory
        factory.name = name
        return factory

    return wrap


def model_names() -> list[str]:
    return sorted(_MODELS)


def check_model(name_or_path: str | os.PathLike) -> None:
    """Raise UserError unless `name_or_path` names a registered model or a saved-model folder."""
    if str(name_or_path) not in _MODELS and not (Path(name_or_path) / "config.json").is_file():
        raise UserError(name_or_path, f"no such model; known models: {', '.join(model_names())}, "
                                      f"or a saved model folder")


def load_model(name_or_path: str | os.PathLike, **context: Any) -> DanceModel:
    """A registered model by name (built with `context`, e.g. training data for baselines),
    or a saved model from a folder holding config.json and its weights."""
    path = Path(name_or_path)
    if str(name_or_path) in _MODELS:
        return _MODELS[str(name_or_path)](**context)
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise UserError(path / "config.json", f"broken model config ({e})") from None
        family = config.get("family")
        if family not in _MODELS or not hasattr(_MODELS[family], "load"):
            raise UserError(path / "config.json", f"unknown model family {family!r}")
        return _MODELS[family].load(path)
    check_model(name_or_path)
    raise AssertionError("unreachable")
