"""`dancegen generate`: a song in, a dance out (BVH, npz, MP4, HTML), from any registered model."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError
from .paths import DEFAULT_MODEL, DEMO_SONG

if TYPE_CHECKING:  # dancegen.motion loads torch, which the cold command loads while features compute
    from .motion import Motion

FORMATS = ("bvh", "npz", "mp4", "html", "glb", "smpl")
MIN_SECONDS = 1.0


@dataclass
class Generated:
    motion: Motion
    song: Path
    start: float  # seconds into the song where the dance starts
    style: str | None
    song_mp3: Future | None = None  # the danced span as MP3 for the HTML page, encoded while the model dances


def read_seed_motion(path: str | os.PathLike) -> Motion:
    from .motion import Motion, read_bvh

    path = Path(path)
    if path.suffix.lower() == ".bvh":
        return read_bvh(path)
    if path.suffix.lower() == ".npz":
        return Motion.load(path)
    raise UserError(path, "a seed motion must be a .bvh or a dancegen .npz")


def generate_dance(song: str | os.PathLike | None = None, *, model: str = "default", seed: int = 0,
                   style: str = "auto", start: float = 0.0, duration: float | None = None,
                   seed_motion: str | os.PathLike | Motion | None = None, prefetch_mp3: bool = False,
                   **controls) -> Generated:
    """Generate a dance for `song` (the bundled demo song when None) with a model.

    `prefetch_mp3` starts encoding the danced span as MP3 (for `write_outputs`' HTML page) while the
    model dances."""
    from . import audio

    song = Path(song) if song is not None else DEMO_SONG
    length = audio.duration(song)  # UserError for a missing, empty or undecodable file
    if start < 0 or start >= length:
        raise UserError(song, f"--start {start:g} s is outside the song ({length:.1f} s)")
    span = min(duration, length - start) if duration is not None else length - start
    if span < MIN_SECONDS:
        raise UserError(song, f"only {span:.2f} s of music to dance to (at least {MIN_SECONDS:g} s needed)")
    early = _features_while_loading(song, model, start, span)
    from .models import Music, load_model
    from .motion import Motion

    dancer = load_model(model)
    classifier = _style_classifier() if style == "auto" else None  # loads while the features compute
    frames = int(span * dancer.fps)
    names = list(dancer.music_features)
    try:
        features = early.result() if early is not None else None
    except BrokenProcessPool:  # the forked process died (killed, out of memory): compute here instead
        features = None
    if features is None or list(features) != names or any(len(f) != frames for f in features.values()):
        features = audio.features_many(song, names, dancer.fps, start=start, num_frames=frames)
    if style == "auto":
        style = _recognise_style(classifier, song, start, span, features, dancer.fps)
    mp3 = None
    if prefetch_mp3:
        from .render.html import song_mp3

        mp3 = _in_background(ThreadPoolExecutor(1), song_mp3, song, start, frames / dancer.fps)
    music = Music(features, dancer.fps, song=song, start=start, style=style)
    if seed_motion is not None and not isinstance(seed_motion, Motion):
        seed_motion = read_seed_motion(seed_motion)
    motion = dancer.generate(music, seed_motion=seed_motion, length=frames, seed=seed, style=style, **controls)
    if abs(motion.duration - frames / dancer.fps) > 0.5 / motion.fps:  # the MP3 must span the dance exactly
        mp3 = None
    return Generated(motion, song, start, style, mp3)


def _features_while_loading(song: Path, model: str, start: float, span: float) -> Future | None:
    """The model's music features, computed in a forked process while this one loads torch and the
    model (the cold command spends seconds in each). Only when torch is not loaded yet, so that the
    fork is safe, and only for a saved model whose config.json names its features; else None."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return None
    folder = DEFAULT_MODEL if model == "default" else Path(model)
    try:
        config = json.loads((folder / "config.json").read_text())
        fps, names = float(config["fps"]), [str(n) for n in config["music_features"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from .audio import features_many

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    return _in_background(pool, features_many, song, names, fps, start=start, num_frames=int(span * fps))


def _in_background(pool, fn, *args, **kwargs) -> Future:
    """`fn(*args, **kwargs)` run by a one-off pool, which closes itself once it is done."""
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def _style_classifier():
    """The bundled music style classifier, or None when it is not bundled."""
    from .metrics.style import ASSETS, MusicStyleClassifier

    if not (ASSETS / "dance_with_melody_music").is_dir():
        return None
    return MusicStyleClassifier.bundled("dance_with_melody")


def _recognise_style(classifier, song: Path, start: float, span: float,
                     features: dict[str, np.ndarray], fps: float) -> str | None:
    """The song's style by the music style `classifier` (None: no style); it reuses the model's
    `features` (at `fps`) when they are the classifier's."""
    if classifier is None:
        return None
    given = features.get(classifier.config["feature"])
    if given is None or fps != classifier.fps:
        given = classifier.song_features(song, start=start, duration=span)
    return classifier.predict(given)


def write_outputs(result: Generated, out: str | os.PathLike, formats: tuple[str, ...] = FORMATS,
                  progress: bool = True) -> list[Path]:
    """Write NAME.bvh/.npz/.mp4/.html/.glb/.smpl.pkl into `out`, each atomically; returns the paths written."""
    from .io import atomic_path
    from .motion import write_bvh

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(None, f"unknown output format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / result.song.stem
    m = result.motion
    written = []
    for fmt in formats:
        path = base.with_suffix(".smpl.pkl" if fmt == "smpl" else f".{fmt}")
        if fmt == "bvh":
            write_bvh(m, path)
        elif fmt == "glb":
            from .motion.gltf import write_glb

            write_glb(m, path)
        elif fmt == "smpl":
            from .motion.smpl_export import write_smpl

            write_smpl(m, path)
        elif fmt == "npz":
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, positions=m.positions(), root_translation=m.root_translation, rotations=m.rotations,
                         fps=np.float64(m.fps), joint_names=np.array(m.skeleton.names),
                         parents=np.array(m.skeleton.parents), offsets=m.skeleton.offsets,
                         music_offset=np.float64(result.start))
        elif fmt == "mp4":
            from .render import render_video

            render_video(m, path, song=result.song, song_offset=result.start, progress=progress)
        else:
            from .render import write_html

            mp3 = result.song_mp3.result() if result.song_mp3 is not None else None
            write_html(m, path, song=result.song, song_offset=result.start, mp3=mp3)
        written.append(path)
    return written
