"""`dancegen generate`: a song in, a dance out (BVH, npz, MP4, HTML), from any registered model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .motion import Motion

DEMO_SONG = Path(__file__).resolve().parent / "assets" / "demo_song.ogg"
FORMATS = ("bvh", "npz", "mp4", "html")
MIN_SECONDS = 1.0


@dataclass
class Generated:
    motion: Motion
    song: Path
    start: float  # seconds into the song where the dance starts
    style: str | None


def read_seed_motion(path: str | os.PathLike) -> Motion:
    from .motion import read_bvh

    path = Path(path)
    if path.suffix.lower() == ".bvh":
        return read_bvh(path)
    if path.suffix.lower() == ".npz":
        return Motion.load(path)
    raise UserError(path, "a seed motion must be a .bvh or a dancegen .npz")


def generate_dance(song: str | os.PathLike | None = None, *, model: str = "default", seed: int = 0,
                   style: str = "auto", start: float = 0.0, duration: float | None = None,
                   seed_motion: str | os.PathLike | Motion | None = None, **controls) -> Generated:
    """Generate a dance for `song` (the bundled demo song when None) with a model."""
    from . import audio
    from .models import Music, load_model

    song = Path(song) if song is not None else DEMO_SONG
    length = audio.duration(song)  # UserError for a missing, empty or undecodable file
    if start < 0 or start >= length:
        raise UserError(song, f"--start {start:g} s is outside the song ({length:.1f} s)")
    span = min(duration, length - start) if duration is not None else length - start
    if span < MIN_SECONDS:
        raise UserError(song, f"only {span:.2f} s of music to dance to (at least {MIN_SECONDS:g} s needed)")
    dancer = load_model(model)
    frames = int(span * dancer.fps)
    features = audio.features_many(song, list(dancer.music_features), dancer.fps, start=start, num_frames=frames)
    if style == "auto":
        style = _recognise_style(song, start, span)
    music = Music(features, dancer.fps, song=song, start=start, style=style)
    if seed_motion is not None and not isinstance(seed_motion, Motion):
        seed_motion = read_seed_motion(seed_motion)
    motion = dancer.generate(music, seed_motion=seed_motion, length=frames, seed=seed, style=style, **controls)
    return Generated(motion, song, start, style)


def _recognise_style(song: Path, start: float, span: float) -> str | None:
    from .metrics.style import ASSETS, MusicStyleClassifier

    if not (ASSETS / "dance_with_melody_music").is_dir():
        return None
    classifier = MusicStyleClassifier.bundled("dance_with_melody")
    return classifier.predict(classifier.song_features(song, start=start, duration=span))


def write_outputs(result: Generated, out: str | os.PathLike, formats: tuple[str, ...] = FORMATS,
                  progress: bool = True) -> list[Path]:
    """Write NAME.bvh/.npz/.mp4/.html into `out`, each atomically; returns the paths written."""
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
        path = base.with_suffix(f".{fmt}")
        if fmt == "bvh":
            write_bvh(m, path)
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

            write_html(m, path, song=result.song, song_offset=result.start)
        written.append(path)
    return written
