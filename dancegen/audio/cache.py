"""Music features of a song file for a time range, cached on disk by file content and recipe.

A range is `num_frames` frames from `start` seconds: row i is the music at start + i / fps s,
so callers take exactly the frames that align with their motion. The recipe runs on the range
plus `context_frames(fps)` of real audio either side where the song has it (the tempogram window
and the chroma smoothing look that far), then the rows are cut out; frames past the end of the
audio are features of silence, and so are silent stretches of a song (finite numbers, no NaN);
a song that is silent throughout is a UserError. The recipes normalise over what they analyse
(power_to_db's 80 dB floor, Bailando's ref=max, the tempo of the beat tracker), so a frame's
features depend slightly on the range asked for (on Dance with Melody about 1-2 % of a column's
standard deviation against the whole song); the same range always gives the same numbers.
The decode and the STFT/mel/HPSS work are shared by all recipes asked for in one call. Cache files are `.npy`, written atomically, named by the SHA-1 of the
file's bytes, the recipe's name and version, fps, and the range.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError, require_file
from ..io import file_digest as file_hash  # SHA-1 of the bytes: a renamed or moved song still hits
from ..io import save_npy
from .decode import MAX_DURATION, SILENCE_PEAK, load, probe
from .recipes import HOP_LENGTH, Analysis, Recipe, get_recipe, import_ahead, sample_rate_for

CONTEXT_SECONDS = 8.0


def default_cache_dir() -> Path:
    """$DANCEGEN_CACHE, else ~/.cache/dancegen."""
    return Path(os.environ.get("DANCEGEN_CACHE") or Path.home() / ".cache" / "dancegen")


def context_frames(fps: float) -> int:
    """Frames of audio context computed either side of a range (≥ half the 384-frame tempogram)."""
    return max(int(math.ceil(CONTEXT_SECONDS * fps)), 200)


def _cache_file(root: Path, digest: str, recipe: Recipe, fps: float, start: float, num_frames: int | None) -> Path:
    length = "end" if num_frames is None else str(num_frames)
    name = f"{digest}_{fps:g}fps_from{start:.6f}s_{length}_ctx{context_frames(fps)}.npy"
    return root / "audio_features" / f"{recipe.name}-v{recipe.version}" / name


def compute_features(y: np.ndarray, recipes: Iterable[str | Recipe], fps: float) -> dict[str, np.ndarray]:
    """Features of a waveform at `sample_rate_for(fps)`, one (1 + len(y) // 512, dim) array per recipe."""
    analysis = Analysis(y, fps)
    return {r.name: r(analysis) for r in map(get_recipe, recipes)}


def warm_up(recipes: Iterable[str | Recipe] = ("fact35", "bailando438"), fps: float = 25.0) -> None:
    """Run the recipes and the beat tracker once on 3 s of clicks, in this process.

    librosa compiles its numba kernels on first use and caches them beside its sources. That cache is
    not safe when two processes compile the same kernel at once (a fresh install preparing a dataset
    with a pool of workers): its index can end up naming the wrong machine code, and every later
    call segfaults. Compiling in one process first leaves the workers only reading it. `make setup`
    calls this, and so does `prepare` before it starts its workers (fast once compiled)."""
    from .beats import beats

    sr = sample_rate_for(fps)
    t = np.arange(int(3 * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0.9)).astype(np.float32)
    compute_features(y, recipes, fps)
    beats(y, sr)


def features_many(
    path: str | os.PathLike,
    recipes: Iterable[str | Recipe],
    fps: float,
    *,
    start: float = 0.0,
    num_frames: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    max_duration: float = MAX_DURATION,
) -> dict[str, np.ndarray]:
    """Features of several recipes for one song range, decoding it once: {recipe name: (T, dim) float32}.

    `num_frames=None` means to the end of the audio: every frame k with start + k / fps before the end.
    Raises UserError for a bad file (see `load`) or a start past the end of the audio.
    """
    p = require_file(path)
    recipes = [get_recipe(r) for r in recipes]
    if start < 0 or (num_frames is not None and num_frames <= 0):
        raise ValueError(f"start must be >= 0 and num_frames > 0, got start={start}, num_frames={num_frames}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = file_hash(p) if cache else ""
    out: dict[str, np.ndarray] = {}
    if cache:
        for r in recipes:
            f = _cache_file(root, digest, r, fps, start, num_frames)
            try:
                out[r.name] = np.load(f)
            except (OSError, ValueError):
                pass
    todo = [r for r in recipes if r.name not in out]
    if todo:
        computed = _compute_range(p, todo, fps, start, num_frames, max_duration)
        for r in todo:
            if cache:
                save_npy(_cache_file(root, digest, r, fps, start, num_frames), computed[r.name])
            out[r.name] = computed[r.name]
    return {r.name: out[r.name] for r in recipes}


def features(
    path: str | os.PathLike,
    recipe: str | Recipe,
    fps: float,
    *,
    start: float = 0.0,
    num_frames: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    max_duration: float = MAX_DURATION,
) -> np.ndarray:
    """Features of one recipe for a song range: (num_frames, recipe.dim) float32. See `features_many`."""
    recipe = get_recipe(recipe)
    return features_many(
        path, [recipe], fps, start=start, num_frames=num_frames, cache_dir=cache_dir, cache=cache,
        max_duration=max_duration,
    )[recipe.name]


def _compute_range(
    path: Path, recipes: list[Recipe], fps: float, start: float, num_frames: int | None, max_duration: float
) -> dict[str, np.ndarray]:
    sr = sample_rate_for(fps)
    total = probe(path).duration
    if math.isfinite(total) and start >= total:
        raise UserError(path, f"features asked from {start:.2f} s but the audio is only {total:.2f} s long")
    ctx = context_frames(fps)
    before = min(ctx, int(math.floor(start * fps + 1e-6)))  # whole frames of context, so frames stay on the grid
    offset = max(0.0, start - before / fps)
    span = None if num_frames is None else (before + num_frames + ctx) / fps
    if span is not None and math.isfinite(total):
        span = min(span, total - offset)
    import_ahead()  # librosa's modules load while the song decodes
    y = load(path, sr, offset=offset, duration=span, max_duration=max_duration, allow_silent=True)
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        # A silent stretch of a song is fine (its features are those of silence); a silent song is not.
        load(path, 8000.0, max_duration=max_duration)  # raises UserError when the whole file is silent
    if num_frames is None:
        num_frames = max(1, int(math.ceil((len(y) / sr - before / fps) * fps - 1e-6)))
    needed = (before + num_frames) * HOP_LENGTH
    if len(y) < needed:  # the range runs past the end of the audio: silence there
        y = np.pad(y, (0, needed - len(y)))
    computed = compute_features(y, recipes, fps)
    return {name: np.ascontiguousarray(x[before : before + num_frames]) for name, x in computed.items()}
