"""The one model interface: every model family, and the benchmark's baselines, implement it.

A model takes `Music` (a song span's features at a frame rate) and returns a `Motion`:

    motion = model.generate(music, seed_motion=None, length=None, seed=0, **controls)

Families register a class by name with `@register_model("name")`; `load_model` builds a
registered model by name, or a saved one from a folder (safetensors weights + config.json with a
`format_version`; loading checks both and never unpickles).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from ..motion import SMPL_JOINT_NAMES, Motion, smpl_skeleton
from ..paths import ASSETS


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


@contextmanager
def one_thread():
    """torch on one thread inside: an autoregressive step is too small to share, a second thread only waits."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


FACT35_BEAT = 34  # fact35's beat one-hot column (dancegen.audio.recipes)

STYLES = ("cha-cha", "rumba", "tango", "waltz")  # the styles a family conditions on; id 0 is "none"


def style_id(style: str | None) -> int:
    """1 + the index of `style` in STYLES; 0 (no style: follow the music) for anything else."""
    return STYLES.index(style) + 1 if style in STYLES else 0


def resample_features(x: np.ndarray, fps: float, new_fps: float) -> np.ndarray:
    """(T, D) frame features at `fps` linearly interpolated to `new_fps`, float32."""
    if fps == new_fps or len(x) < 2:
        return x
    t = np.arange(len(x)) / fps
    new_t = np.arange(int(np.floor(t[-1] * new_fps + 1e-6)) + 1) / new_fps
    return np.stack([np.interp(new_t, t, x[:, i]) for i in range(x.shape[1])], axis=1).astype(np.float32)


class SavedModel(DanceModel):
    """Mixin for a trainable family (an `nn.Module` whose constructor keywords are `self.config`): saving
    as safetensors + config.json, loading without unpickling, the normalisation a new model takes from
    a prepared dataset's train split (`motion_mean/std`, `music_mean/std` buffers), and the music
    input and motion output at the model's own frame rate.

    A family sets `training_features` (rot6d windows -> the per-frame features it normalises) and
    `min_motion_std`, and calls `register_normalisation` in its constructor."""

    training_features: Callable
    min_motion_std: float = 1e-4
    trained_styles: tuple[str, ...] | None = None  # the training dances' styles (`dancegen train` records them)
    # each style's median skeleton offsets over its training dances ({style: (J, 3)}; `dancegen train` records them)
    style_skeletons: dict[str, np.ndarray] | None = None

    def style_index(self, style: str | None) -> int:
        """`style_id(style)` for generation, or 0 (none: follow the music) for a style no training dance
        had (Dance with Melody's tango is test-only): its embedding never got a gradient. A model saved
        before the trainer recorded `trained_styles` takes every style."""
        if self.trained_styles is not None and style not in self.trained_styles:
            return 0
        return style_id(style)

    def skeleton_of(self, style: str | None):
        """The body `style`'s training dances were danced on (the median of their skeletons), where the
        trainer recorded one; else the train split's median skeleton, `self.skeleton`."""
        offsets = (self.style_skeletons or {}).get(style)
        return self.skeleton if offsets is None else smpl_skeleton(np.asarray(offsets))

    def keep_config(self, scope: dict) -> None:
        """`self.config`: the constructor's keyword arguments, from its `locals()` (its `**` catch-all
        left out, tuples as lists), what `save` writes and `load` passes back; `self.skeleton`: SMPL's
        with the config's `skeleton_offsets` (the default offsets when None), which the config then holds."""
        self.config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in scope.items()
                       if k not in ("self", "unused", "family", "__class__")}
        offsets = self.config.get("skeleton_offsets")
        self.skeleton = smpl_skeleton(None if offsets is None else np.asarray(offsets))
        self.config["skeleton_offsets"] = self.skeleton.offsets.tolist()

    def register_normalisation(self, motion_dim: int, music_dim: int) -> None:
        import torch

        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))
        self.register_buffer("music_mean", torch.zeros(music_dim))
        self.register_buffer("music_std", torch.ones(music_dim))

    @classmethod
    def for_data(cls, data, **config: Any):
        """A new model for a `PreparedDataset`: fps, music dims, the train split's median skeleton and
        the normalisation of its train split."""
        import torch

        names = data.split("train")
        features = tuple(config.get("music_features", ("fact35",)))
        config = {**config, "music_dims": [data.features[f] for f in features], "fps": data.fps,
                  "skeleton_offsets": np.median(np.stack([data.motion(n).skeleton.offsets for n in names]), 0).tolist()}
        model = cls(**config)
        motion = torch.cat([cls.training_features(torch.from_numpy(np.array(data.array(n, "rot6d")))) for n in names])
        model.motion_mean.copy_(motion.mean(0))
        model.motion_std.copy_(motion.std(0).clamp(min=cls.min_motion_std))
        stats = [data.normaliser(f) for f in features]
        model.music_mean.copy_(torch.from_numpy(np.concatenate([s.mean for s in stats])))
        model.music_std.copy_(torch.from_numpy(np.concatenate([s.std for s in stats])).clamp(min=1e-4))
        return model

    def music_input(self, music: Music, length: int | None) -> tuple[int, int, np.ndarray]:
        """(length in music frames, the same span in model frames, the model's music features at its fps
        (un-normalised, concatenated; possibly a frame short of the span))."""
        missing = [f for f in self.music_features if f not in music.features]
        if missing:
            raise ValueError(f"this model needs music features {', '.join(missing)} (it has "
                             f"{', '.join(music.features) or 'none'})")
        length = length or music.num_frames
        frames = max(1, int(round(length * self.fps / music.fps)))
        feats = np.concatenate([resample_features(np.asarray(music.features[f], np.float32), music.fps, self.fps)
                                for f in self.music_features], axis=1)
        return length, frames, feats

    def at_music_rate(self, motion: Motion, music: Music, length: int) -> Motion:
        """`motion` resampled to the music's fps and cut or padded (last pose held) to `length` frames."""
        if music.fps == self.fps:
            return motion
        motion = motion.resample(music.fps)
        if motion.num_frames >= length:
            return motion[:length]
        extra = length - motion.num_frames
        return Motion(motion.fps, motion.skeleton,
                      np.concatenate([motion.root_translation, np.repeat(motion.root_translation[-1:], extra, 0)]),
                      np.concatenate([motion.rotations, np.repeat(motion.rotations[-1:], extra, 0)]))

    def save(self, folder: str | os.PathLike) -> None:
        """`folder`/model.safetensors and config.json (family, `format_version`, constructor keywords),
        each written to a temporary name and renamed."""
        from safetensors.torch import save_file

        from ..io import atomic_path, write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        config = {"family": self.name, "format_version": FORMAT_VERSION, **self.config}
        if self.trained_styles is not None:
            config["trained_styles"] = sorted(self.trained_styles)
        if self.style_skeletons is not None:
            config["style_skeletons"] = {k: np.asarray(v).tolist() for k, v in sorted(self.style_skeletons.items())}
        write_text(folder / CONFIG, json.dumps(config, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike):
        """A saved model: config.json checked (family, format version, keywords), the model built from
        it, then the safetensors weights checked tensor by tensor. Nothing is unpickled. Every problem
        is a one-line UserError naming the file."""
        import torch

        folder = Path(folder)
        config = read_model_config(folder)
        if config["family"] != cls.name:
            raise UserError(folder / CONFIG, f"a {config['family']!r} model, not a {cls.name!r} one")
        keywords = {k: v for k, v in config.items()
                    if k not in ("family", "format_version", "trained_styles", "style_skeletons")}
        styles = config.get("trained_styles")
        if styles is not None and not (isinstance(styles, list) and all(isinstance(x, str) for x in styles)):
            raise UserError(folder / CONFIG, f"broken model config: trained_styles {styles!r} is not a list of names")
        bodies = _style_skeletons(folder / CONFIG, config.get("style_skeletons"))
        shapes = None
        # First without memory (meta tensors): a config of absurd sizes meets the file's shapes, not the
        # RAM. Not for the package's own models (the bundled default): building on meta imports
        # torch._dynamo, 1.4 s of the `dancegen generate` budget on two cores.
        if not folder.resolve().is_relative_to(ASSETS):
            try:
                with torch.device("meta"):
                    shapes = {k: tuple(v.shape) for k, v in cls(**keywords).state_dict().items()}
            except Exception:  # noqa: BLE001 - a family that cannot build on meta is checked when built for real
                pass
        if shapes is not None:
            check_weight_shapes(folder / WEIGHTS, shapes)
        try:
            model = cls(**keywords)
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AttributeError, OverflowError) as e:
            raise UserError(folder / CONFIG, f"cannot build the {cls.name} model from it ({_one_line(e)})") from None
        model.load_state_dict(read_weights(folder / WEIGHTS, model.state_dict()))
        if styles is not None:
            model.trained_styles = tuple(styles)
        model.style_skeletons = bodies
        return model.eval()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_MODELS: dict[str, Callable[..., DanceModel]] = {}


def heard_style(music: Music, dataset: str) -> str | None:
    """The style the bundled music style classifier of `dataset` (dancegen/assets/style/) hears in
    `music`, as `dancegen generate --style auto` asks it; None when the music lacks its feature."""
    from ..metrics.style import MusicStyleClassifier

    classifier = MusicStyleClassifier.bundled(dataset)
    x = music.features.get(classifier.config["feature"])
    if x is None or len(x) == 0:
        return None
    return classifier.predict(resample_features(np.asarray(x, dtype=np.float32), music.fps, classifier.fps))


def style_skeletons(data) -> dict[str, np.ndarray] | None:
    """{style: the median skeleton offsets (J, 3) of the train split's dances of that style} for a
    `PreparedDataset` (`SavedModel.style_skeletons`), None if its skeleton is not SMPL's: in Dance with
    Melody the Latin dances were danced by performers whose legs are up to 13 cm longer than the waltzer's."""
    names = data.split("train")
    if not names or data.motion(names[0]).skeleton.names != SMPL_JOINT_NAMES:
        return None
    by_style: dict[str, list[np.ndarray]] = {}
    for n in names:
        if style := data.sequences[n].get("style"):
            by_style.setdefault(style, []).append(data.motion(n).skeleton.offsets)
    return {style: np.median(np.stack(offsets), 0) for style, offsets in sorted(by_style.items())}


def _style_skeletons(path: Path, value: Any) -> dict[str, np.ndarray] | None:
    """A config's `style_skeletons` checked: {style name: 24 × 3 offsets}; a one-line UserError if not."""
    if value is None:
        return None
    try:
        bodies = {k: np.asarray(v, dtype=np.float64) for k, v in value.items() if isinstance(k, str)}
        ok = len(bodies) == len(value) and all(b.shape == (len(SMPL_JOINT_NAMES), 3) and np.isfinite(b).all()
                                               for b in bodies.values())
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(path, "broken model config: style_skeletons is not a map of style names to "
                              f"{len(SMPL_JOINT_NAMES)} × 3 joint offsets")
    return bodies


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
    if str(name_or_path) not in _MODELS and not (Path(name_or_path) / CONFIG).is_file():
        raise UserError(name_or_path, f"no such model; known models: {', '.join(model_names())}, "
                                      f"or a saved model folder")


def load_model(name_or_path: str | os.PathLike, **context: Any) -> DanceModel:
    """A registered model by name (built with `context`, e.g. training data for baselines),
    or a saved model from a folder holding config.json and its weights (or either file in it)."""
    path = Path(name_or_path)
    if str(name_or_path) in _MODELS:
        return _MODELS[str(name_or_path)](**context)
    if path.is_file() and path.name in (CONFIG, WEIGHTS):
        path = path.parent
    if (path / CONFIG).is_file():
        family = read_model_config(path)["family"]
        return _MODELS[family].load(path)
    check_model(name_or_path)
    raise AssertionError("unreachable")


# Saved-model files. A saved model is a folder: config.json ({"family", "format_version", constructor
# keywords}) and model.safetensors. Both are plain data: JSON and safetensors' header + raw tensors, so
# loading a model from a stranger runs no code of theirs (no pickle anywhere on this path).
CONFIG, WEIGHTS = "config.json", "model.safetensors"
FORMAT_VERSION = 1
"""The saved-model format this dancegen writes and the newest it reads (a config without the key is 1)."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_model_config(folder: str | os.PathLike) -> dict:
    """A saved model's config.json, checked: a JSON object naming a registered, loadable family,
    in a format version this dancegen reads. UserError (naming the file) otherwise."""
    path = Path(folder) / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(path, "missing: a saved model folder holds config.json and model.safetensors") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(path, f"cannot read the model config ({_one_line(e)})") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UserError(path, f"broken model config, not JSON ({_one_line(e)})") from None
    if not isinstance(config, dict):
        raise UserError(path, "broken model config: not a JSON object")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(path, f"broken model config: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise UserError(path, f"saved in model format version {version} by a newer dancegen; this one reads "
                              f"up to version {FORMAT_VERSION} (upgrade dancegen)")
    family = config.get("family")
    loadable = sorted(n for n, f in _MODELS.items() if hasattr(f, "load"))
    if not isinstance(family, str) or family not in loadable:
        raise UserError(path, f"unknown model family {family!r}; known families: {', '.join(loadable)}")
    return config


def _mismatch(path: Path, expected: dict[str, tuple], found: dict[str, tuple]) -> None:
    """UserError when the tensors `found` in a weights file (name -> shape, or (shape, dtype)) are not
    the `expected` ones."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    wrong = [f"{k} is {found[k]}, the model needs {v}" for k, v in expected.items() if k in found and found[k] != v]
    problems = [f"{len(wrong)} tensors of the wrong shape or type ({wrong[0]}{', ...' if len(wrong) > 1 else ''})"
                ] if wrong else []
    for what, names in (("missing", missing), ("unexpected", extra)):
        if names:
            problems.append(f"{len(names)} {what} tensors ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    if problems:
        raise UserError(path, "weights do not fit the model in config.json: " + "; ".join(problems))


def _open_weights(path: Path, read):
    from safetensors import SafetensorError

    if not path.is_file():
        raise UserError(path, "missing: a saved model folder holds config.json and model.safetensors")
    try:
        return read()
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError) as e:
        raise UserError(path, f"damaged or not a safetensors file ({_one_line(e)})") from None


def check_weight_shapes(path: str | os.PathLike, shapes: dict[str, tuple]) -> None:
    """From the safetensors header alone (no tensor is read): the file holds exactly tensors of `shapes`."""
    from safetensors import safe_open

    path = Path(path)

    def header():
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    _mismatch(path, shapes, _open_weights(path, header))


def read_weights(path: str | os.PathLike, expected: dict) -> dict:
    """The tensors of a safetensors file, checked against a model's `expected` state dict: the same
    names, shapes and dtypes. UserError (naming the file) for a missing, damaged or mismatched file."""
    from safetensors.torch import load_file

    path = Path(path)
    weights = _open_weights(path, lambda: load_file(str(path)))
    _mismatch(path, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()},
              {k: (tuple(v.shape), v.dtype) for k, v in weights.items()})
    return weights
