"""Style classifiers: which dance style does a song call for, and which style is a dance?

The "music style extractor" of Dancing-to-Music (Lee et al. 2019) and its counterpart for motion.
The benchmark's style accuracy is the share of generated dances whose recognised style (by the
motion classifier) is the song's.

- `MusicStyleClassifier`: a song's audio features (T, D) at the classifier's fps -> style.
- `MotionStyleClassifier`: any `Motion` whose skeleton has the training skeleton's joints -> style.
  Its input (`motion_features`) is computed from the motion itself: the motion's rotations are put
  on one reference skeleton (so bone lengths and body size say nothing: in Dance with Melody one
  dancer danced every waltz), joint positions are taken relative to the root and turned, frame by
  frame, so that the hips face +Z; with the joints' velocities in that frame, the root's velocity
  in it, the yaw rate and the root's height above the lowest joint. Turning about Y or moving a
  dance leaves it unchanged.

Both share one network, `StyleNet`: a strided 1-D convolution, a GRU, the mean over time and a
linear layer, over fixed windows (6 s by default); a whole song's or dance's probabilities are
the mean of its windows' probabilities (windows overlap by half). Training samples random windows,
each style equally often. A saved classifier is a folder: `model.safetensors` and `config.json`
(architecture, styles, feature, fps, window, normalisation, the reference skeleton, how it was
trained); `load(folder)` rebuilds it from that, no pickle.

    python -m dancegen.metrics.style train --prepared DIR --modality motion -o OUT [--size large]
    python -m dancegen.metrics.style evaluate CLASSIFIER --prepared DIR [--split test]

Written here by hand: the motion features and the small train/evaluate loops; everything else
is torch and safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..io import atomic_path, write_text
from ..motion import Motion
from ..motion.skeleton import SMPL_JOINT_NAMES, Skeleton, smpl_skeleton
from ..paths import STYLE_CLASSIFIERS

FORMAT = "dancegen-style-classifier"
FORMAT_VERSION = 1
MOTION_FEATURE = "facing_positions"
ASSETS = STYLE_CLASSIFIERS
SIZES = {"small": {"hidden": 32, "layers": 1}, "large": {"hidden": 128, "layers": 2}}
# Named column subsets of audio features: "rhythm" keeps the onset envelope and the onset and beat
# one-hots (fact35), with the tempogram for bailando438; timbre and key say little about style in
# a few dozen songs (docs/style_classifiers.md).
COLUMNS = {"rhythm": {"fact35": [0, 33, 34], "bailando438": list(range(52, 438))}}
# Left and right hip joint names tried, in order, to find which way a body faces.
HIP_NAMES = (("lhip", "rhip"), ("LeftUpLeg", "RightUpLeg"), ("LeftHip", "RightHip"), ("left_hip", "right_hip"))


# ---------------------------------------------------------------- motion features

def hip_joints(skeleton: Skeleton) -> tuple[str, str]:
    for left, right in HIP_NAMES:
        if left in skeleton.names and right in skeleton.names:
            return left, right
    raise UserError(None, f"no left/right hip joints among {', '.join(skeleton.names)}")


def standing_height(skeleton: Skeleton) -> float:
    """Height of the root above the lowest joint in the rest pose, metres (scales the root's path)."""
    rest = skeleton.rest_positions()
    return float(rest[0, 1] - rest[:, 1].min())


def _yaw_rotate(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors v (T, ..., 3) about +Y by -angle (T,): the frame where `angle` faces +Z."""
    c, s = np.cos(angle), np.sin(angle)
    c, s = c.reshape(-1, *([1] * (v.ndim - 2))), s.reshape(-1, *([1] * (v.ndim - 2)))
    return np.stack([c * v[..., 0] - s * v[..., 2], v[..., 1], s * v[..., 0] + c * v[..., 2]], axis=-1)


def motion_features(motion: Motion, *, fps: float, reference: Skeleton | None = None,
                    hips: tuple[str, str] | None = None, facing_sigma: float = 0.1) -> np.ndarray:
    """Per-frame features (T', 6 (J-1) + 5) of a motion at `fps`, invariant to turning about Y and moving.

    The motion's rotations are put on `reference` (default: its own skeleton) with the root's path
    scaled by the ratio of standing heights. Per frame: joint positions relative to the root in the
    facing frame (hips' left-right axis, smoothed with a Gaussian of `facing_sigma` s, crossed with
    Y gives +Z), their velocities in that frame, the root's velocity (x, y, z) in it, the yaw rate
    (rad/s) and the root's height above the lowest joint.
    """
    reference = motion.skeleton if reference is None else reference
    if not motion.skeleton.same_topology(reference):
        raise UserError(None, f"the motion's skeleton ({motion.skeleton.num_joints} joints: "
                              f"{', '.join(motion.skeleton.names[:4])}, ...) is not the classifier's "
                              f"({reference.num_joints} joints: {', '.join(reference.names[:4])}, ...)")
    left, right = hip_joints(reference) if hips is None else hips
    scale = standing_height(reference) / max(standing_height(motion.skeleton), 1e-6)
    pos = Motion(motion.fps, reference, motion.root_translation * scale, motion.rotations).positions()
    pos = pos.astype(np.float64)
    if motion.fps != fps:  # joint positions, linearly
        t = np.arange(len(pos)) / motion.fps
        new_t = np.arange(int(np.floor(t[-1] * fps + 1e-6)) + 1) / fps
        flat = pos.reshape(len(pos), -1)
        pos = np.stack([np.interp(new_t, t, flat[:, i]) for i in range(flat.shape[1])], 1).reshape(len(new_t), -1, 3)
    across = pos[:, reference.index(left)] - pos[:, reference.index(right)]
    if len(pos) > 1 and facing_sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        across = gaussian_filter1d(across, facing_sigma * fps, axis=0, mode="nearest")
    facing = np.arctan2(-across[:, 2], across[:, 0])  # forward = across x up = (-az, 0, ax)
    root = pos[:, 0]
    local = _yaw_rotate(pos[:, 1:] - root[:, None], facing)
    step = lambda x: np.concatenate([np.diff(x, axis=0), np.diff(x, axis=0)[-1:]], 0) * fps if len(x) > 1 \
        else np.zeros_like(x)
    joint_velocity = step(local)
    root_velocity = _yaw_rotate(step(root), facing)
    yaw_rate = step(np.unwrap(facing))
    height = root[:, 1] - pos[:, :, 1].min(axis=1)
    t = len(pos)
    return np.concatenate([local.reshape(t, -1), joint_velocity.reshape(t, -1), root_velocity,
                           yaw_rate[:, None], height[:, None]], axis=1).astype(np.float32)


# ---------------------------------------------------------------- the network

class StyleNet(nn.Module):
    """(B, T, input_dim) -> (B, num_styles) logits: strided conv, GRU, mean over time, linear."""

    def __init__(self, input_dim: int, num_styles: int, hidden: int = 32, layers: int = 1,
                 kernel: int = 5, stride: int = 2, dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Conv1d(input_dim, hidden, kernel, stride=stride, padding=kernel // 2)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_styles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T', hidden)
        h, _ = self.gru(h)
        return self.head(self.dropout(h.mean(dim=1)))


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Starts of windows covering `length` frames, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    return starts if starts[-1] == length - window else starts + [length - window]


# ---------------------------------------------------------------- classifiers

class StyleClassifier:
    """A trained `StyleNet` with everything needed to use it; see `MusicStyleClassifier`, `MotionStyleClassifier`."""

    modality = ""

    def __init__(self, config: dict, net: StyleNet):
        self.config = config
        self.net = net.eval()
        self.styles: list[str] = list(config["styles"])
        self.fps = float(config["fps"])
        self.window = max(1, round(config["window_seconds"] * self.fps))
        self.hop = max(1, round(config["hop_seconds"] * self.fps))
        self.mean = np.asarray(config["normalisation"]["mean"], dtype=np.float32)
        self.std = np.asarray(config["normalisation"]["std"], dtype=np.float32)

    # features -> probabilities
    def window_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Style probabilities (N, S) of each window of per-frame features (T, D) at `fps`."""
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.std
        if x.ndim != 2 or x.shape[1] != len(self.mean) or len(x) == 0:
            raise UserError(None, f"expected features (T, {len(self.mean)}), got {x.shape}")
        w = min(self.window, len(x))
        batch = np.stack([x[s:s + w] for s in window_starts(len(x), w, self.hop)])
        from ..models.base import one_thread  # the GRU's steps are small: a second thread waits (seconds on a busy machine)

        with torch.no_grad(), one_thread():
            return torch.softmax(self.net(torch.from_numpy(batch)), dim=-1).numpy()

    def feature_probabilities(self, features: np.ndarray) -> dict[str, float]:
        p = self.window_probabilities(features).mean(axis=0)
        return {s: float(v) for s, v in zip(self.styles, p)}

    # saving and loading
    def save(self, folder: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        write_text(folder / "config.json", json.dumps(self.config, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "StyleClassifier":
        """A saved classifier; `StyleClassifier.load` picks the class from the config's modality."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
            if config.get("format") != FORMAT:
                raise ValueError("not a dancegen style classifier config")
            kind = {"music": MusicStyleClassifier, "motion": MotionStyleClassifier}[config["modality"]]
            if cls is not StyleClassifier and kind is not cls:
                raise ValueError(f"a {config['modality']} classifier, not a {cls.modality} one")
            net = StyleNet(**config["net"])
            net.load_state_dict(load_file(str(folder / "model.safetensors")))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise UserError(folder, f"not a style classifier ({e})") from None
        return kind(config, net)

    @classmethod
    def bundled(cls, dataset: str = "dance_with_melody") -> "StyleClassifier":
        """The classifier shipped in dancegen/assets/style/ for `dataset`."""
        return cls.load(ASSETS / f"{dataset}_{cls.modality}")


class MusicStyleClassifier(StyleClassifier):
    """Style from a song's audio features (config `feature`, frame-aligned at config `fps`)."""

    modality = "music"

    def features(self, music_features: np.ndarray) -> np.ndarray:
        """The classifier's input: the config's `columns` of the feature (all when None)."""
        x = np.asarray(music_features, dtype=np.float32)
        return x if self.config.get("columns") is None else x[:, self.config["columns"]]

    def probabilities(self, music_features: np.ndarray) -> dict[str, float]:
        """Style probabilities of a song span from its full feature array (T, D) at `fps`."""
        return self.feature_probabilities(self.features(music_features))

    def predict(self, music_features: np.ndarray) -> str:
        p = self.probabilities(music_features)
        return max(p, key=p.get)

    def song_features(self, path: str | os.PathLike, start: float = 0.0, duration: float | None = None) -> np.ndarray:
        """The classifier's feature of a song file (for audio recipes such as fact35), via the cache."""
        from ..audio.cache import features

        frames = None if duration is None else int(round(duration * self.fps))
        return features(path, self.config["feature"], self.fps, start=start, num_frames=frames)


class MotionStyleClassifier(StyleClassifier):
    """Style from any `Motion` whose skeleton has the classifier's joints (SMPL's 24 for Dance with Melody)."""

    modality = "motion"

    def __init__(self, config: dict, net: StyleNet):
        super().__init__(config, net)
        self.reference = Skeleton.from_dict(config["skeleton"])
        self.hips = tuple(config["hips"])

    def features(self, motion: Motion) -> np.ndarray:
        return motion_features(motion, fps=self.fps, reference=self.reference, hips=self.hips,
                               facing_sigma=self.config["facing_sigma"])

    def probabilities(self, motion: Motion) -> dict[str, float]:
        return self.feature_probabilities(self.features(motion))

    def predict(self, motion: Motion) -> str:
        p = self.probabilities(motion)
        return max(p, key=p.get)


# ---------------------------------------------------------------- training

@dataclass
class Example:
    """One song's or dance's per-frame classifier input (T, D) and its style."""

    name: str
    style: str
    features: np.ndarray


def reference_skeleton(skeleton: Skeleton) -> Skeleton:
    """SMPL's neutral skeleton for SMPL-topology motion, else the given one."""
    return smpl_skeleton() if skeleton.names == SMPL_JOINT_NAMES else skeleton


def prepared_examples(prepared, names: Iterable[str], config: dict) -> list[Example]:
    """Classifier inputs of prepared sequences, as `config` (a classifier's or `input_config`'s) reads them."""
    out = []
    for name in names:
        style = prepared.sequences[name]["style"]
        if config["modality"] == "music":
            if prepared.fps != config["fps"]:
                raise UserError(prepared.root,
                                f"features at {prepared.fps} fps; the classifier reads {config['fps']} fps")
            x = np.asarray(prepared.array(name, config["feature"]), dtype=np.float32)
            x = x if config.get("columns") is None else x[:, config["columns"]]
        else:
            x = motion_features(prepared.motion(name), fps=config["fps"],
                                reference=Skeleton.from_dict(config["skeleton"]), hips=tuple(config["hips"]),
                                facing_sigma=config["facing_sigma"])
        out.append(Example(name, style, x))
    return out


def fit(examples: Sequence[Example], *, input_config: dict, styles: Sequence[str] | None = None,
        size: str = "small", hidden: int | None = None, layers: int | None = None,
        window_seconds: float = 6.0, epochs: int = 20, windows_per_epoch: int = 512, batch_size: int = 32,
        lr: float = 2e-3, weight_decay: float = 1e-2, noise: float = 0.1, offset_noise: float = 0.0, seed: int = 0,
        log: Callable[[str], None] | None = None) -> StyleClassifier:
    """Train a classifier on whole examples; `input_config` (`music_config` or `motion_config`) says what
    they are. Each step draws `batch_size` random windows, each style equally often, adds Gaussian
    noise (`noise` per value, `offset_noise` per window and column, in normalised units). Deterministic
    for a seed and a thread count."""
    t0 = time.time()
    fps = float(input_config["fps"])
    styles = sorted({e.style for e in examples}) if styles is None else list(styles)
    arrays = [e.features for e in examples]
    frames = np.concatenate(arrays)
    mean, std = frames.mean(0), np.maximum(frames.std(0), 1e-3)
    window = min(max(1, round(window_seconds * fps)), min(len(a) for a in arrays))
    arrays = [((a - mean) / std).astype(np.float32) for a in arrays]
    labels = np.array([styles.index(e.style) for e in examples])
    by_style = [np.flatnonzero(labels == k) for k in range(len(styles))]
    by_style = [(k, idx) for k, idx in enumerate(by_style) if len(idx)]
    net_args = dict(input_dim=frames.shape[1], num_styles=len(styles), **SIZES[size])
    net_args.update({k: v for k, v in (("hidden", hidden), ("layers", layers)) if v is not None})

    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StyleNet(**net_args)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * max(1, windows_per_epoch // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
        net.train()
        for step in range(steps):
            batch, target = [], []
            for _ in range(batch_size):
                k, idx = by_style[rng.integers(len(by_style))]
                lengths = np.array([len(arrays[i]) - window + 1 for i in idx], dtype=float)
                i = idx[rng.choice(len(idx), p=lengths / lengths.sum())]
                s = rng.integers(len(arrays[i]) - window + 1)
                batch.append(arrays[i][s:s + window])
                target.append(k)
            x = torch.from_numpy(np.stack(batch))
            x = x + noise * torch.randn_like(x) + offset_noise * torch.randn(len(x), 1, x.shape[2])
            loss = nn.functional.cross_entropy(net(x), torch.tensor(target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if log and (step + 1) % max(1, steps // 10) == 0:
                log(f"step {step + 1}/{steps}  loss {loss.item():.3f}  {time.time() - t0:.0f} s")
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, **input_config, "styles": styles,
        "window_seconds": window / fps, "hop_seconds": window / fps / 2, "net": net_args,
        "normalisation": {"mean": mean.tolist(), "std": std.tolist()},
        "training": {"examples": [e.name for e in examples], "epochs": epochs, "windows_per_epoch": windows_per_epoch,
                     "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "noise": noise,
                     "offset_noise": offset_noise,
                     "seed": seed, "seconds": round(time.time() - t0, 1)},
    }
    kind = MusicStyleClassifier if input_config["modality"] == "music" else MotionStyleClassifier
    return kind(config, net)


def music_config(feature: str, fps: float, dataset: str | None = None, columns: str | list[int] | None = None) -> dict:
    """What a music classifier reads: an audio feature (T, D) at `fps`, its `columns` (indices, a name
    in `COLUMNS` such as "rhythm", or None for all)."""
    if isinstance(columns, str):
        if feature not in COLUMNS.get(columns, {}):
            raise UserError(None, f"no {columns!r} columns known for feature {feature!r}")
        columns = COLUMNS[columns][feature]
    return {"modality": "music", "feature": feature, "fps": float(fps), "dataset": dataset,
            "columns": None if columns is None else [int(c) for c in columns]}


def motion_config(skeleton: Skeleton, fps: float, dataset: str | None = None, facing_sigma: float = 0.1) -> dict:
    """What a motion classifier reads: `motion_features` at `fps` on `skeleton`'s reference skeleton."""
    ref = reference_skeleton(skeleton)
    return {"modality": "motion", "feature": MOTION_FEATURE, "fps": float(fps), "dataset": dataset,
            "skeleton": ref.to_dict(), "hips": list(hip_joints(ref)), "facing_sigma": facing_sigma}


def input_config(prepared, modality: str, feature: str | None, names: Sequence[str],
                 columns: str | list[int] | None = None) -> dict:
    """`music_config` or `motion_config` for a prepared dataset (the skeleton of its first sequence in `names`)."""
    kind = prepared.manifest["kind"]
    if modality == "music":
        if feature not in prepared.features:
            raise UserError(prepared.root, f"no feature {feature!r}; it has {', '.join(prepared.features)}")
        return music_config(feature, prepared.fps, kind, columns)
    if modality != "motion":
        raise UserError(None, f"modality must be music or motion, not {modality!r}")
    return motion_config(prepared.motion(names[0]).skeleton, prepared.fps, kind)


def train(prepared_dir: str | os.PathLike, modality: str, feature: str | None = None, *,
          columns: str | list[int] | None = None, splits: Sequence[str] = ("train", "val"),
          **fit_args) -> StyleClassifier:
    """Train on the songs of `splits` of a prepared dataset (see `fit` for the options)."""
    from ..data.prepared import PreparedDataset

    prepared = PreparedDataset(prepared_dir)
    names = [n for s in splits for n in prepared.split(s)]
    cfg = input_config(prepared, modality, feature, names, columns)
    examples = prepared_examples(prepared, names, cfg)
    clf = fit(examples, input_config=cfg, **fit_args)
    clf.config["training"]["splits"] = list(splits)
    return clf


# ---------------------------------------------------------------- evaluation

def evaluate(classifier: StyleClassifier, examples: Sequence[Example], styles: Sequence[str] | None = None) -> dict:
    """Per-song and per-window accuracy, balanced accuracy and a confusion matrix (rows: truth)."""
    songs = [(e.name, e.style, classifier.window_probabilities(e.features)) for e in examples]
    return score([(n, s, [classifier.styles[i] for i in p.argmax(1)], dict(zip(classifier.styles, p.mean(0))))
                  for n, s, p in songs], styles)


def score(predictions: Sequence[tuple[str, str, list[str], dict]], styles: Sequence[str] | None = None) -> dict:
    """Figures from (name, true style, per-window predictions, song probabilities) tuples."""
    styles = sorted({p[1] for p in predictions} | {w for p in predictions for w in p[2]}) if styles is None \
        else list(styles)
    confusion = np.zeros((len(styles), len(styles)), dtype=int)
    per_song = {}
    for name, truth, windows, probs in predictions:
        guess = max(probs, key=probs.get)
        confusion[styles.index(truth), styles.index(guess)] += 1
        per_song[name] = {"style": truth, "predicted": guess, "windows": len(windows),
                          "windows_correct": sum(w == truth for w in windows)}
    recalls = [confusion[i, i] / confusion[i].sum() for i in range(len(styles)) if confusion[i].sum()]
    return {
        "songs": len(per_song),
        "song_accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "window_accuracy": float(sum(p["windows_correct"] for p in per_song.values())
                                 / max(1, sum(p["windows"] for p in per_song.values()))),
        "styles": styles, "confusion": confusion.tolist(), "per_song": per_song,
    }


def majority_baseline(train: Sequence[Example], test: Sequence[Example], window: int, hop: int,
                      styles: Sequence[str] | None = None) -> dict:
    """Always the most common style among the training songs."""
    names = [e.style for e in train]
    top = max(sorted(set(names)), key=names.count)
    return score([(e.name, e.style, [top] * len(window_starts(len(e.features), window, hop)), {top: 1.0})
                  for e in test], styles)


def song_folds(examples: Sequence[Example], k: int, seed: int = 0) -> list[list[int]]:
    """k folds of example indices, stratified by style (each style's songs dealt round the folds)."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for style in sorted({e.style for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.style == style]
        for i in rng.permutation(idx):
            folds[turn % k].append(int(i))
            turn += 1
    return [sorted(f) for f in folds if f]


def cross_validate(examples: Sequence[Example], k: int, *, input_config: dict, seed: int = 0,
                   styles: Sequence[str] | None = None, log: Callable[[str], None] | None = None, **fit_args) -> dict:
    """k-fold cross-validation by song (k = len(examples): leave one song out). Every song is scored
    once, by the classifier that did not see it; the majority baseline is scored the same way."""
    styles = sorted({e.style for e in examples}) if styles is None else list(styles)
    predictions, baseline, seconds = [], [], []
    for f, held in enumerate(song_folds(examples, k, seed)):
        train_set = [e for i, e in enumerate(examples) if i not in held]
        test_set = [examples[i] for i in held]
        clf = fit(train_set, input_config=input_config, seed=seed, **fit_args)
        seconds.append(clf.config["training"]["seconds"])
        for e in test_set:
            p = clf.window_probabilities(e.features)
            windows = [clf.styles[i] for i in p.argmax(1)]
            predictions.append((e.name, e.style, windows, dict(zip(clf.styles, p.mean(0)))))
        baseline += majority_baseline(train_set, test_set, clf.window, clf.hop, styles)["per_song"].items()
        if log:
            log(f"fold {f + 1}: held out {', '.join(e.name for e in test_set)}; {seconds[-1]:.0f} s")
    out = score(predictions, styles)
    base = [(n, p["style"], [p["predicted"]] * p["windows"], {p["predicted"]: 1.0}) for n, p in baseline]
    out["majority_baseline"] = {k: v for k, v in score(base, styles).items() if k != "per_song"}
    out["folds"] = k
    out["train_seconds_per_fold"] = float(np.mean(seconds))
    return out


def confusion_markdown(result: dict) -> str:
    styles = result["styles"]
    rows = ["| true \\ predicted | " + " | ".join(styles) + " |", "|---" * (len(styles) + 1) + "|"]
    rows += [f"| {s} | " + " | ".join(str(v) for v in row) + " |" for s, row in zip(styles, result["confusion"])]
    return "\n".join(rows)


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dancegen.metrics.style", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a style classifier on a prepared dataset")
    t.add_argument("--prepared", required=True, help="prepared dataset folder (dancegen prepare)")
    t.add_argument("--modality", required=True, choices=["music", "motion"])
    t.add_argument("--feature", help=f"audio feature for music (e.g. fact35); motion always uses {MOTION_FEATURE}")
    t.add_argument("--columns", help="music: feature columns, comma-separated indices or a name (rhythm)")
    t.add_argument("-o", "--out", required=True, help="output folder (config.json + model.safetensors)")
    t.add_argument("--splits", default="train,val", help="splits to train on (default: train,val)")
    t.add_argument("--size", default="small", choices=sorted(SIZES))
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--window", type=float, default=6.0, help="window length, seconds")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    e = sub.add_parser("evaluate", help="score a saved classifier on a split of a prepared dataset")
    e.add_argument("classifier")
    e.add_argument("--prepared", required=True)
    e.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    try:
        from ..data.prepared import PreparedDataset

        if getattr(args, "threads", 0):
            torch.set_num_threads(args.threads)
        if args.command == "train":
            if args.modality == "music" and not args.feature:
                raise UserError(None, "--feature is needed for --modality music (e.g. fact35)")
            columns = args.columns if not args.columns or not args.columns[0].isdigit() else \
                [int(c) for c in args.columns.split(",")]
            clf = train(args.prepared, args.modality, args.feature, columns=columns, splits=args.splits.split(","),
                        size=args.size, epochs=args.epochs, window_seconds=args.window, seed=args.seed,
                        log=lambda m: print(m, file=sys.stderr))
            clf.save(args.out)
            print(f"{args.out}: {clf.modality} classifier of {', '.join(clf.styles)} "
                  f"({clf.config['training']['seconds']:.0f} s)")
        else:
            clf = StyleClassifier.load(args.classifier)
            prepared = PreparedDataset(args.prepared)
            names = prepared.split(args.split)
            examples = prepared_examples(prepared, names, clf.config)
            styles = sorted({prepared.sequences[n]["style"] for n in prepared.sequences} | set(clf.styles))
            r = evaluate(clf, examples, styles)
            print(f"{args.split}: {r['songs']} songs, song accuracy {r['song_accuracy']:.3f}, balanced "
                  f"{r['balanced_accuracy']:.3f}, window accuracy {r['window_accuracy']:.3f}")
            print(confusion_markdown(r))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
