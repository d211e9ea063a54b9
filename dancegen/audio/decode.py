"""Decoding any song file to a mono float32 waveform at a requested rate.

soundfile (libsndfile) reads wav, flac, ogg and mp3 and seeks sample-accurately; whatever it
cannot read (m4a/aac, opus-in-mp4, damaged files) goes to the ffmpeg binary that imageio-ffmpeg
ships. soxr resamples. Hand-written here is only the glue: choosing the decoder, reading a time
range, and turning every way a file can be bad into one `UserError` line.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import UserError, require_file

MAX_DURATION = 30 * 60.0
"""Refuse to decode more than this many seconds unless `max_duration` is raised (memory, time)."""

FFMPEG_PROBE_SECONDS = 60.0
"""Time limit of ffmpeg reading a header; decoding may take this plus the audio's duration."""

SILENCE_PEAK = 1e-4
"""Audio whose peak stays below this (-80 dBFS) is treated as silent."""

# Leading bytes of the containers libsndfile reads; anything else goes straight to ffmpeg,
# which keeps libsndfile's mpg123 from printing resync notes about non-audio files.
_SOUNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b"ID3", b".snd", b"caff")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: duration in seconds (nan if unknown), native rate, channels."""

    duration: float
    sample_rate: float
    channels: int
    decoder: str  # "soundfile" or "ffmpeg"


def _is_mpeg_sync(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _soundfile_can_try(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(_SOUNDFILE_MAGIC) or _is_mpeg_sync(head)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr (libsndfile's mpg123 prints notes about damaged mp3 streams)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_problem(stderr: bytes) -> str:
    """The most telling line of ffmpeg's stderr: its cause ('moov atom not found'), else its summary."""
    generic = ("At least one output file", "Error opening input file", "Error opening input files")
    causes, summary = [], "ffmpeg could not decode it"
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())  # drop '[in#0 @ 0x...]' prefixes
        if line.startswith("Error opening input:"):
            summary = line.removeprefix("Error opening input:").strip()
        elif line and not line.startswith(generic) and "misdetection possible" not in line:
            causes.append(line)
    return causes[-1] if causes else summary


def _run_ffmpeg(path: Path, cmd: list[str], seconds: float) -> subprocess.CompletedProcess:
    """ffmpeg with a time limit: a file crafted to make it spin is an error, not a hang."""
    try:
        return subprocess.run(cmd, capture_output=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        raise UserError(path, f"ffmpeg did not finish reading it within {seconds:g} s (damaged file?)") from None


def _probe_ffmpeg(path: Path) -> AudioInfo:
    r = _run_ffmpeg(path, [_ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path)], FFMPEG_PROBE_SECONDS)
    text = r.stderr.decode("utf-8", "replace")
    stream = re.search(r"Stream #\S+.*?: Audio: .*?(\d+) Hz, ([^,]+)", text)
    if stream is None:
        if "Error opening input" in text or "Invalid data" in text:
            raise UserError(path, f"damaged or not an audio file (ffmpeg: {_ffmpeg_problem(r.stderr)})")
        raise UserError(path, "no audio stream in the file")
    layout = stream.group(2).strip()
    channels = {"mono": 1, "stereo": 2}.get(layout)
    if channels is None:
        m = re.match(r"(\d+) channels", layout)
        channels = int(m.group(1)) if m else 2
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = float("nan") if dur is None else 3600 * int(dur[1]) + 60 * int(dur[2]) + float(dur[3])
    return AudioInfo(duration, float(stream.group(1)), channels, "ffmpeg")


def _wav_claims_more(info: sf._SoundFileInfo) -> bool:
    """libsndfile quietly shortens a truncated WAV; its log says 'data : N (should be M)'."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, re.M)
    return m is not None and int(m[1]) not in (0, 0xFFFFFFFF, 0xFFFFFFFE) and int(m[1]) > int(m[2])


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header only: duration, native rate, channels. Raises UserError if unreadable."""
    p = require_file(path)
    if _soundfile_can_try(p):
        try:
            with _quiet_stderr():
                info = sf.info(str(p))
            if info.frames > 0 and info.samplerate > 0:
                if info.format.startswith("WAV") and _wav_claims_more(info):
                    raise UserError(p, "file is truncated: the WAV header promises more audio than the file holds")
                return AudioInfo(info.frames / info.samplerate, float(info.samplerate), info.channels, "soundfile")
        except (sf.LibsndfileError, RuntimeError):
            pass
    return _probe_ffmpeg(p)


def _read_soundfile(path: Path, start: int, frames: int) -> tuple[np.ndarray, float]:
    with _quiet_stderr(), sf.SoundFile(str(path)) as f:
        if start:
            f.seek(start)
        y = f.read(frames, dtype="float32", always_2d=True)
        return y.mean(axis=1, dtype=np.float32), float(f.samplerate)


def _read_ffmpeg(path: Path, info: AudioInfo, offset: float, duration: float) -> tuple[np.ndarray, float]:
    sr = info.sample_rate
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:a:0"]
    if offset > 0:  # as an output option: decode and discard, sample-accurate (input seeking is ~15 ms off on AAC)
        cmd += ["-ss", f"{offset:.6f}"]
    cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-f", "f32le", "-ac", str(info.channels), "-ar", f"{sr:g}", "-"]
    r = _run_ffmpeg(path, cmd, FFMPEG_PROBE_SECONDS + duration)  # decoding runs far faster than real time
    if r.returncode != 0 or not r.stdout:
        raise UserError(path, f"audio could not be decoded (ffmpeg: {_ffmpeg_problem(r.stderr)})")
    y = np.frombuffer(r.stdout, dtype=np.float32)
    y = y[: len(y) // info.channels * info.channels].reshape(-1, info.channels)
    return y.mean(axis=1, dtype=np.float32), sr


def load(
    path: str | os.PathLike,
    sample_rate: float,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration: float = MAX_DURATION,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode `duration` seconds (default: to the end) from `offset` as mono float32 at `sample_rate`.

    Raises `UserError` for a missing, empty, truncated or non-audio file, for more than
    `max_duration` seconds to decode (checked from the header, before decoding), and for audio that
    is silent (peak below -80 dBFS) unless `allow_silent`.
    """
    p = require_file(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"offset must be >= 0 and duration > 0, got offset={offset}, duration={duration}")
    info = probe(p)
    total = info.duration
    if math.isfinite(total) and offset >= total:
        raise UserError(p, f"starts at {offset:.2f} s but the audio is only {total:.2f} s long")
    left = total - offset if math.isfinite(total) else math.inf
    want = left if duration is None else min(duration, left)
    if want > max_duration:
        raise UserError(
            p,
            f"{want / 60:.1f} minutes of audio to decode, over the {max_duration / 60:g}-minute limit "
            f"(raise max_duration to allow it)",
        )
    expected = want if math.isfinite(total) else math.nan  # what the header promises

    y = None
    if info.decoder == "soundfile":
        start = int(round(offset * info.sample_rate))
        frames = -1 if duration is None else int(round(duration * info.sample_rate))
        try:
            y, native = _read_soundfile(p, start, frames)
        except (sf.LibsndfileError, RuntimeError):
            y = None  # e.g. flac that lost sync: let ffmpeg decode what it can
    if y is None:
        limit = want if math.isfinite(want) else max_duration + 1.0
        y, native = _read_ffmpeg(p, info, offset, limit)
        if not math.isfinite(want) and len(y) > max_duration * native:
            raise UserError(p, f"more than {max_duration / 60:g} minutes of audio (raise max_duration to allow it)")

    if len(y) == 0:
        raise UserError(p, "no audio samples could be decoded (truncated or damaged file)")
    got = len(y) / native
    if math.isfinite(expected) and got < expected - max(0.1, 0.02 * expected):
        raise UserError(p, f"file is truncated or damaged: header says {expected:.2f} s, {got:.2f} s could be decoded")
    if not np.all(np.isfinite(y)):
        raise UserError(p, "decoded audio contains NaN or infinite samples")
    if not allow_silent and float(np.max(np.abs(y))) < SILENCE_PEAK:
        where = "" if offset == 0 and duration is None else f" from {offset:.2f} s for {got:.2f} s"
        raise UserError(p, f"audio is silent{where} (peak below -80 dBFS)")
    if native != sample_rate:
        y = soxr.resample(y, native, sample_rate, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file's header (nan when the header does not say)."""
    return probe(path).duration
