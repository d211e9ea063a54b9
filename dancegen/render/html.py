"""A Motion as one self-contained HTML page that plays the dance in 3D with its music.

The page (template: viewer.html beside this module) holds everything inline and needs no network:
the joint positions as little-endian int16 millimetres in base64, the figure's bones, sides and
thicknesses (the same `Figure` the MP4 uses), the song's span as an MP3 data URI in an <audio>
element, and a hand-written Canvas-2D renderer (~300 lines; a vendored Three.js would be ~600 KB
for the few primitives needed). The animation follows the audio's clock while the music plays.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_path
from ..motion import Motion
from .figure import SIDE_COLOURS, Figure

AUDIO_BITRATE_KBPS = 96  # MP3: plays in every browser; 3 minutes are ~2.2 MB (2.9 MB as base64)


def encode_positions(positions: np.ndarray) -> tuple[str, int]:
    """(T, J, 3) metres → (base64 of int16 little-endian, unit in mm). The unit is 1 mm unless a
    joint strays beyond ±32.7 m, when it grows so that every value fits."""
    scale = max(1, math.ceil(float(np.abs(positions).max(initial=0.0)) * 1000 / 32767))
    q = np.round(np.asarray(positions, dtype=np.float64) * 1000 / scale).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii"), scale


def decode_positions(data: str, scale: int, frames: int, joints: int) -> np.ndarray:
    """The inverse of `encode_positions`: (T, J, 3) metres."""
    q = np.frombuffer(base64.b64decode(data), dtype="<i2")
    return q.reshape(frames, joints, 3).astype(np.float32) * (scale / 1000)


def song_mp3(song: str | os.PathLike, offset: float, duration: float) -> bytes:
    """The span [offset, offset + duration] of `song` as MP3 bytes, by the ffmpeg binary."""
    import imageio_ffmpeg

    from ..audio import probe

    info = probe(song)
    if np.isfinite(info.duration) and offset >= info.duration:
        raise UserError(song, f"the dance starts at {offset:.2f} s, after the song ends ({info.duration:.2f} s)")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
           "-ss", f"{offset:.3f}", "-t", f"{duration:.3f}", "-i", str(song), "-vn", "-map_metadata", "-1",
           "-c:a", "libmp3lame", "-b:a", f"{AUDIO_BITRATE_KBPS}k", "-f", "mp3", "pipe:1"]
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0 or not r.stdout:
        lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise UserError(song, f"ffmpeg could not encode the music ({lines[-1] if lines else 'no audio out'})")
    return r.stdout


def write_html(motion: Motion, path: str | os.PathLike, *, song: str | os.PathLike | None = None,
               song_offset: float = 0.0, title: str | None = None, mp3: bytes | None = None) -> Path:
    """Write one HTML file that plays `motion` in 3D (orbit, zoom, pause, seek) with the song's span
    [song_offset, song_offset + duration]; it works from disk and fetches nothing. `mp3` is that span
    already encoded by `song_mp3` (it is encoded here when None)."""
    path = Path(path)
    if song_offset < 0:
        raise ValueError(f"song_offset must be >= 0, got {song_offset}")
    if motion.num_frames == 0:
        raise ValueError("the motion has no frames")
    title = title if title is not None else path.stem
    positions = motion.positions()
    figure = Figure.of(motion.skeleton)
    encoded, scale = encode_positions(positions)
    data = {
        "fps": motion.fps, "frames": motion.num_frames, "joints": motion.skeleton.num_joints,
        "names": list(motion.skeleton.names), "scale": scale, "positions": encoded,
        "bones": figure.bones.tolist(), "sides": figure.sides.tolist(),
        "radii": [round(float(r), 4) for r in figure.radii], "trunk": figure.trunk.tolist(),
        "head": figure.head, "neck": figure.neck, "headRadius": round(figure.head_radius, 4),
        "colours": SIDE_COLOURS.tolist(),
    }
    audio = ""
    if song is not None:
        mp3 = mp3 if mp3 is not None else song_mp3(song, song_offset, motion.duration)
        audio = f' src="data:audio/mpeg;base64,{base64.b64encode(mp3).decode("ascii")}"'
    fields = {
        "TITLE": html.escape(title),
        "AUDIO": audio,
        "DATA": json.dumps(data, separators=(",", ":")).replace("<", "\\u003c"),  # nothing can end the <script>
    }
    template = resources.files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")
    page = re.sub(r"\{\{(TITLE|AUDIO|DATA)\}\}", lambda m: fields[m.group(1)], template)
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
