"""Beat tracking: essentia's multi-feature tracker by default, librosa's as the alternative.

Both are maintained libraries; nothing here is hand-written beyond resampling to the rate each
wants. `docs/beat_tracking.md` (from `benchmarks/beat_trackers.py`) measures both against chart
beats: essentia's RhythmExtractor2013 (multifeature) scores higher, so it is the default.
The feature recipes keep librosa's beat one-hot as published; this is dancegen's own tracker.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import soxr

TRACKERS = ("essentia", "librosa")
DEFAULT_TRACKER = "essentia"


class BeatTrack(NamedTuple):
    times: np.ndarray  # beat times in seconds, increasing, float64
    bpm: float  # the tracker's global tempo estimate


def _essentia(y: np.ndarray, sr: float) -> BeatTrack:
    import essentia

    essentia.log.infoActive = False  # else importing essentia.standard logs an INFO line to stdout
    import essentia.standard as es

    if sr != 44100:  # the multifeature tracker is built for 44.1 kHz
        y = soxr.resample(y, sr, 44100, quality="HQ")
    bpm, ticks, _, _, _ = es.RhythmExtractor2013(method="multifeature")(np.ascontiguousarray(y, dtype=np.float32))
    return BeatTrack(np.asarray(ticks, dtype=np.float64), float(bpm))


def _librosa(y: np.ndarray, sr: float) -> BeatTrack:
    from .recipes import librosa_beat

    if sr != 22050:  # librosa's defaults (hop 512) are tuned at 22.05 kHz
        y = soxr.resample(y, sr, 22050, quality="HQ")
    tempo, times = librosa_beat().beat_track(y=y, sr=22050, units="time")
    return BeatTrack(np.asarray(times, dtype=np.float64), float(np.atleast_1d(tempo)[0]))


def beats(y: np.ndarray, sr: float, *, tracker: str = DEFAULT_TRACKER) -> BeatTrack:
    """Beat times (s, from the start of `y`) and tempo of a mono waveform at `sr` Hz."""
    if tracker not in TRACKERS:
        raise ValueError(f"unknown beat tracker {tracker!r}; known: {', '.join(TRACKERS)}")
    y = np.asarray(y, dtype=np.float32)
    return _essentia(y, sr) if tracker == "essentia" else _librosa(y, sr)


def song_beats(path, *, start: float = 0.0, duration: float | None = None, tracker: str = DEFAULT_TRACKER,
               cache_dir=None) -> np.ndarray:
    """Beat times (s, from `start`) of a span of a song file, cached on disk by content and span."""
    from ..io import save_npy
    from .cache import default_cache_dir, file_hash
    from .decode import load

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    span = "end" if duration is None else f"{duration:.6f}"
    cached = root / "beats" / tracker / f"{file_hash(path)}_from{start:.6f}s_{span}.npy"
    if cached.is_file():
        return np.load(cached)
    times = beats(load(path, 44100, offset=start, duration=duration), 44100, tracker=tracker).times
    save_npy(cached, times)
    return times
