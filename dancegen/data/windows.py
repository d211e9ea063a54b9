"""Windows over a prepared dataset for training, as Transflower's multimodal dataset cuts them.

Each modality has a window length and a time offset relative to the window start: with inputs
{"rot6d": (120, 0), "fact35": (140, 0)} and outputs {"rot6d": (20, 120)}, a sample starting at
frame i holds motion frames [i, i+120) and music [i, i+140) as input and motion frames
[i+120, i+140) as the target. A start is valid where every window lies inside the sequence.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .prepared import PreparedDataset

Windows = dict[str, tuple[int, int]]  # modality -> (length, offset)


class WindowDataset(Dataset):
    def __init__(self, root: str | os.PathLike, split: str, inputs: Windows, outputs: Windows, *,
                 stride: int = 1, normalise: bool = True):
        self.data = PreparedDataset(root)
        self.inputs, self.outputs = dict(inputs), dict(outputs)
        windows = list(self.inputs.values()) + list(self.outputs.values())
        for feature in {**self.inputs, **self.outputs}:
            if feature not in self.data.features:
                raise UserError(self.data.root, f"no modality {feature!r}; it has {', '.join(self.data.features)}")
        if any(length <= 0 for length, _ in windows) or stride <= 0:
            raise ValueError("window lengths and stride must be positive")
        self.first = -min(offset for _, offset in windows)  # the earliest frame a window reaches, negated
        span = max(offset + length for length, offset in windows) + self.first
        self.normalisers = {f: self.data.normaliser(f) for f in {**self.inputs, **self.outputs}} if normalise else {}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.index: list[tuple[str, int]] = []
        for name in self.data.split(split):
            frames = self.data.sequences[name]["frames"]
            self.arrays[name] = {f: self.data.array(name, f) for f in {**self.inputs, **self.outputs}}
            self.index.extend((name, start) for start in range(0, frames - span + 1, stride))

    def __len__(self) -> int:
        return len(self.index)

    def _window(self, name: str, start: int, feature: str, window: tuple[int, int]) -> torch.Tensor:
        length, offset = window
        begin = start + self.first + offset
        x = np.array(self.arrays[name][feature][begin:begin + length], dtype=np.float32)
        if feature in self.normalisers:
            x = self.normalisers[feature](x)
        return torch.from_numpy(x)

    def __getitem__(self, i: int) -> dict[str, dict[str, torch.Tensor]]:
        name, start = self.index[i]
        return {
            "inputs": {f: self._window(name, start, f, w) for f, w in self.inputs.items()},
            "outputs": {f: self._window(name, start, f, w) for f, w in self.outputs.items()},
        }
