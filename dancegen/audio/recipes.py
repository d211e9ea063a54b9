"""Music feature recipes of the field, named and versioned, at any frame rate.

Each recipe reproduces a published extractor with librosa calls:

- `fact35`  AIST++ FACT / EDGE (`data/audio_extraction/baseline_features.py`): onset envelope (1),
  MFCC (20), chroma_cens (12), onset-peak one-hot (1), beat one-hot (1). EDGE seeds the beat
  tracker with the AIST++ tempo parsed from the file name, else with librosa's tempo estimate;
  songs have no such names here, so it is always librosa's estimate (on the same onset envelope).
- `bailando438`  Bailando (`_prepro_aistpp_music.py` + `extractor.py`): MFCC of power_to_db(mel,
  ref=max) (20), their deltas (20), chroma_cqt of the harmonic part (12), onset envelope of the
  percussive part (1), beat one-hot (1), tempogram (384).

The waveform is at sr = fps × 512 and the hop is 512 samples, so frame k is centred at k / fps s.
Below about 18 fps the chroma CQT keeps fewer than the published 7 octaves (the top ones would
pass Nyquist). The beat one-hots stay the published librosa ones so features compare with the
papers; dancegen's own, better beat tracker is `dancegen.audio.beats`.

What is ours, for speed: an `Analysis` computes the STFT, mel spectrogram and HPSS of a waveform
once and hands them to both recipes (librosa accepts precomputed S / onset_envelope), and HPSS
runs librosa.decompose.hpss's own steps with bottleneck's running median in place of scipy's,
ten times faster. `tests/test_audio.py` checks both recipes against the reference call sequence.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import librosa
import numpy as np

HOP_LENGTH = 512
# what the recipes and the beat tracker call: librosa loads each on first use (2-3 s of imports on two cores)
LIBROSA_MODULES = ("librosa.core", "librosa.feature.spectral", "librosa.feature.rhythm", "librosa.onset")
_imports_ahead: threading.Thread | None = None


def import_ahead() -> None:
    """Start importing the librosa modules the recipes call (`LIBROSA_MODULES`, and librosa.beat through
    `librosa_beat`) in a background thread, once per process. A caller that decodes a song next overlaps
    the two, since libsndfile and soxr decode without holding the GIL: a cold 206-s song's features
    took about a second less. Python's import locks make a module used meanwhile wait for its import;
    `librosa_beat`, which checks sys.modules (where a module appears before it is whole), waits for
    the thread, and so does a fork (a child must not inherit import locks held by a thread it lacks)."""
    global _imports_ahead
    if _imports_ahead is None:
        _imports_ahead = threading.Thread(target=_import_librosa, name="librosa imports", daemon=True)
        _imports_ahead.start()


def _import_librosa() -> None:
    librosa_beat()
    for name in LIBROSA_MODULES:
        importlib.import_module(name)


def _wait_for_imports_ahead() -> None:
    if _imports_ahead is not None and _imports_ahead is not threading.current_thread():
        _imports_ahead.join()


os.register_at_fork(before=_wait_for_imports_ahead)


def librosa_beat():
    """`librosa.beat`, imported with every numba kernel it compiles cached on disk.

    librosa 0.11 compiles its beat tracker's `__beat_local_score` with `cache=False` (its other kernels
    are cached), so every new process spent about 2 s compiling it on import, on the critical path of a
    cold `dancegen generate`. While librosa.beat is first imported, numba's `guvectorize` is wrapped
    to cache what it compiles; the kernel is the same, and the beats too (tested). `warm_up` compiles it
    once in a single process, as for librosa's other cached kernels."""
    _wait_for_imports_ahead()
    if "librosa.beat" in sys.modules:
        return sys.modules["librosa.beat"]
    import numba

    original = numba.guvectorize

    def guvectorize(*args, **kwargs):
        return original(*args, **{**kwargs, "cache": True})

    numba.guvectorize = guvectorize
    try:
        return importlib.import_module("librosa.beat")
    finally:
        numba.guvectorize = original


def sample_rate_for(fps: float) -> float:
    """The analysis rate of the recipes: fps × 512 (hop 512, so one feature frame per motion frame)."""
    return float(fps) * HOP_LENGTH


def _one_hot(indices: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    indices = np.asarray(indices, dtype=int)
    out[indices[(indices >= 0) & (indices < length)]] = 1.0
    return out


def _cqt_octaves(sr: float, wanted: int = 7, bins_per_octave: int = 36) -> int:
    """7 octaves from C1 as published; fewer where the top filter would pass Nyquist (fps < ~18)."""
    fmin = librosa.note_to_hz("C1") * 2.0 ** (0.5 / bins_per_octave)  # worst-case tuning correction
    for n in range(wanted, 0, -1):
        freqs = librosa.cqt_frequencies(n * bins_per_octave, fmin=fmin, bins_per_octave=bins_per_octave)
        alpha = librosa.filters._relative_bandwidth(freqs=freqs)
        _, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, alpha=alpha)
        if cutoff <= sr / 2:
            return n
    raise ValueError(f"sample rate {sr} Hz is too low for a chroma CQT")


def _median_filter(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """scipy.ndimage.median_filter(mode="reflect") along one axis, as librosa's HPSS calls it.

    bottleneck's running median gives the same numbers ten times faster (HPSS dominates the cost
    of bailando438); scipy is the fallback where bottleneck is not installed.
    """
    try:
        import bottleneck
    except ImportError:
        import scipy.ndimage

        size = [1] * x.ndim
        size[axis] = width
        return scipy.ndimage.median_filter(x, size=size, mode="reflect")
    half = width // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    moved = bottleneck.move_median(np.pad(x, pad, mode="symmetric"), width, axis=axis)  # trailing window
    return np.take(moved, np.arange(width - 1, moved.shape[axis]), axis=axis)


class Analysis:
    """A mono waveform at sr = fps × 512 and the librosa quantities the recipes share, each computed once."""

    def __init__(self, y: np.ndarray, fps: float):
        self.y = np.ascontiguousarray(y, dtype=np.float32)
        self.fps = float(fps)
        self.sr = sample_rate_for(fps)

    @property
    def num_frames(self) -> int:
        return 1 + len(self.y) // HOP_LENGTH

    @cached_property
    def stft(self) -> np.ndarray:
        return librosa.stft(self.y, n_fft=2048, hop_length=HOP_LENGTH)

    @cached_property
    def mel_power(self) -> np.ndarray:
        return librosa.feature.melspectrogram(S=np.abs(self.stft) ** 2, sr=self.sr)

    @cached_property
    def mel_db(self) -> np.ndarray:
        """power_to_db(mel), as onset_strength(y=…) and mfcc(y=…) compute it inside."""
        return librosa.power_to_db(self.mel_power)

    @cached_property
    def onset_envelope(self) -> np.ndarray:
        return librosa.onset.onset_strength(S=self.mel_db, sr=self.sr, hop_length=HOP_LENGTH)

    @cached_property
    def hpss(self) -> tuple[np.ndarray, np.ndarray]:
        """Harmonic and percussive waveforms, as librosa.effects.hpss(y) makes them (same numbers)."""
        magnitude, phase = librosa.magphase(self.stft)
        harm = _median_filter(magnitude, 31, axis=-1)  # along time
        perc = _median_filter(magnitude, 31, axis=-2)  # along frequency
        n = len(self.y)
        return tuple(
            librosa.istft(magnitude * librosa.util.softmask(a, b, power=2.0, split_zeros=True) * phase,
                          hop_length=HOP_LENGTH, length=n, dtype=self.y.dtype)
            for a, b in ((harm, perc), (perc, harm))
        )

    @cached_property
    def percussive_onset_envelope(self) -> np.ndarray:
        return librosa.onset.onset_strength(y=self.hpss[1], sr=self.sr, hop_length=HOP_LENGTH, aggregate=np.median)


def _fact35(a: Analysis) -> np.ndarray:
    env = a.onset_envelope
    mfcc = librosa.feature.mfcc(S=a.mel_db, n_mfcc=20)
    tuning = librosa.estimate_tuning(S=np.abs(a.stft), sr=a.sr, bins_per_octave=36)  # = from y, STFT shared
    chroma = librosa.feature.chroma_cens(
        y=a.y, sr=a.sr, hop_length=HOP_LENGTH, n_chroma=12, tuning=tuning, n_octaves=_cqt_octaves(a.sr)
    )
    peaks = librosa.onset.onset_detect(onset_envelope=env, sr=a.sr, hop_length=HOP_LENGTH)
    # EDGE seeds the beat tracker with the AIST tempo from the file name, else librosa's tempo estimate.
    start_bpm = float(librosa.feature.tempo(onset_envelope=env, sr=a.sr, hop_length=HOP_LENGTH)[0])
    _, beats = librosa_beat().beat_track(
        onset_envelope=env, sr=a.sr, hop_length=HOP_LENGTH, start_bpm=start_bpm, tightness=100
    )
    n = len(env)
    return np.concatenate(
        [env[:, None], mfcc.T, chroma.T, _one_hot(peaks, n)[:, None], _one_hot(beats, n)[:, None]], axis=1
    )


def _bailando438(a: Analysis) -> np.ndarray:
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(a.mel_power, ref=np.max), n_mfcc=20)
    delta = librosa.feature.delta(mfcc, width=3)
    harmonic, _ = a.hpss
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=a.sr, hop_length=HOP_LENGTH, n_octaves=_cqt_octaves(a.sr))
    env = a.percussive_onset_envelope
    tempogram = librosa.feature.tempogram(onset_envelope=env, sr=a.sr, hop_length=HOP_LENGTH, win_length=384)
    _, beats = librosa_beat().beat_track(onset_envelope=env, sr=a.sr, hop_length=HOP_LENGTH)
    n = len(env)
    return np.concatenate([mfcc.T, delta.T, chroma.T, env[:, None], _one_hot(beats, n)[:, None], tempogram.T], axis=1)


@dataclass(frozen=True)
class Recipe:
    """A named, versioned feature extractor: waveform at fps × 512 Hz -> (frames, dim) float32."""

    name: str
    version: int
    columns: tuple[str, ...]
    compute: Callable[[Analysis], np.ndarray]
    source: str

    @property
    def dim(self) -> int:
        return len(self.columns)

    def __call__(self, y: np.ndarray | Analysis, fps: float | None = None) -> np.ndarray:
        """Features of a waveform sampled at `sample_rate_for(fps)`: (1 + len(y) // 512, dim) float32."""
        a = y if isinstance(y, Analysis) else Analysis(y, fps)
        with warnings.catch_warnings():  # silent stretches have no pitch to estimate tuning from
            warnings.filterwarnings("ignore", "Trying to estimate tuning from empty frequency set")
            out = np.asarray(self.compute(a), dtype=np.float32)
        assert out.shape == (a.num_frames, self.dim), (self.name, out.shape)
        # Silence gives no NaN in librosa 0.11; keep it that way if a version ever does.
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _names(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}_{i}" for i in range(n))


FACT35 = Recipe(
    name="fact35",
    version=1,
    columns=("onset_envelope", *_names("mfcc", 20), *_names("chroma_cens", 12), "onset_peak", "beat"),
    compute=_fact35,
    source="AIST++ FACT / EDGE data/audio_extraction/baseline_features.py",
)

BAILANDO438 = Recipe(
    name="bailando438",
    version=1,
    columns=(
        *_names("mfcc", 20),
        *_names("mfcc_delta", 20),
        *_names("chroma_cqt", 12),
        "percussive_onset_envelope",
        "beat",
        *_names("tempogram", 384),
    ),
    compute=_bailando438,
    source="Bailando _prepro_aistpp_music.py + extractor.py",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (FACT35, BAILANDO438)}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A recipe by name (or the recipe itself); ValueError naming the known ones otherwise."""
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(f"unknown audio feature recipe {recipe!r}; known: {', '.join(RECIPES)}") from None
