"""A Motion as an MP4 with its music: H.264 + AAC, yuv420p, 30 fps, plays everywhere.

`frames.FrameDrawer` draws each frame; they go as raw yuv420p through a pipe to the ffmpeg binary
that imageio-ffmpeg ships, which encodes them with libx264 and muxes in the song's span
[song_offset, song_offset + duration], read straight from the song file. The file is written to a
temporary name and renamed when complete, so an error or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError
from ..io import atomic_path
from ..motion import Motion
from .figure import Figure
from .frames import FrameDrawer

# ultrafast with its deblocking filter back on: about half the CPU of superfast (2.3-2.6 ms a frame
# at 640x480 against 3.8-5.1 on the demo dance, a busy machine) for the same picture (SSIM to the
# drawn frames 0.9935 against 0.9937, PSNR 47.6 dB against 45.9), in a bigger file (about 2 Mbit/s
# against 1.2): the 200 frames/s bar on two cores cannot spare the 2 ms. No B-frames and no CABAC,
# so every H.264 player opens it.
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p"]
# The frames are BT.601 video-range Y'CbCr (see frames.py); say so in the stream.
BT601 = ["-x264-params", "deblock=0,0:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m:range=tv"]
AAC = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "160k"]  # the default coder costs twice the time


def render_video(motion: Motion, path: str | os.PathLike, *, song: str | os.PathLike | None = None,
                 song_offset: float = 0.0, fps: float = 30, size: tuple[int, int] = (640, 480),
                 progress: bool = True, highlight_times: np.ndarray | None = None) -> Path:
    """Write `motion` as an MP4 at `fps` with the span [song_offset, song_offset + duration] of `song`.
    The figure is outlined in yellow on the frames nearest `highlight_times` (seconds; e.g. keyframes).

    The motion is resampled to `fps`. The file appears only when complete: an exception or Ctrl-C
    leaves nothing at `path`. Raises UserError for an unreadable song or an offset past its end.
    """
    path = Path(path)
    w, h = (int(x) for x in size)
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ValueError(f"video size must be even and at least 16x16, got {size}")
    if song_offset < 0:
        raise ValueError(f"song_offset must be >= 0, got {song_offset}")
    if motion.num_frames == 0:
        raise ValueError("the motion has no frames")
    if song is not None:
        check_song(song, song_offset)
    positions = motion.resample(fps).positions()
    highlight = None
    if highlight_times is not None:
        highlight = np.zeros(len(positions), bool)
        highlight[np.clip(np.round(np.asarray(highlight_times) * fps).astype(int), 0, len(positions) - 1)] = True
    drawer = FrameDrawer(positions, Figure.of(motion.skeleton), fps, (w, h), highlight)
    frames = (drawer.draw(i) for i in range(len(drawer)))
    return write_mp4(path, frames, len(drawer), fps=fps, size=(w, h), song=song, song_offset=song_offset,
                     song_duration=motion.duration, progress=progress)


def check_song(song: str | os.PathLike, song_offset: float) -> None:
    """UserError for an unreadable song or an offset past its end."""
    from ..audio import probe

    info = probe(song)
    if np.isfinite(info.duration) and song_offset >= info.duration:
        raise UserError(song, f"the dance starts at {song_offset:.2f} s, after the song ends ({info.duration:.2f} s)")


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], count: int, *, fps: float,
              size: tuple[int, int], pix_fmt: str = "yuv420p", song: str | os.PathLike | None = None,
              song_offset: float = 0.0, song_duration: float | None = None, progress: bool = True) -> Path:
    """Encode `count` frames (flat yuv420p, or (H, W, 3) uint8 with pix_fmt="rgb24") of `size` at `fps`
    as H.264, muxed with `song_duration` seconds (default: the video's) of `song` from `song_offset`.

    The file appears only when complete: an exception or Ctrl-C leaves nothing at `path`."""
    import imageio_ffmpeg
    from tqdm import tqdm

    path = Path(path)
    w, h = size
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0"]
    if song is not None:
        cmd += ["-ss", f"{song_offset:.3f}", "-t", f"{count / fps if song_duration is None else song_duration:.3f}",
                "-i", str(song), "-map", "0:v:0", "-map", "1:a:0", *AAC]
    cmd += [*X264, *BT601, "-movflags", "+faststart", "-t", f"{count / fps:.3f}", "-f", "mp4"]
    with atomic_path(path, suffix=".mp4") as tmp, tempfile.TemporaryFile() as log:
        # ffmpeg gets a session of its own so that a Ctrl-C reaches only us (a KeyboardInterrupt
        # rather than ffmpeg quitting under us); we stop it ourselves.
        proc = subprocess.Popen([*cmd, str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
        _widen_pipe(proc.stdin)
        try:
            with tqdm(total=count, desc="video", unit="frame", disable=not progress) as bar:
                for frame in frames:
                    proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8))
                    bar.update()
            proc.stdin.close()
            code = proc.wait()
        except BrokenPipeError:  # ffmpeg quit early; its log says why
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        if code != 0:
            log.seek(0)
            lines = [ln for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            raise UserError(path, f"ffmpeg could not write the video ({lines[-1] if lines else f'exit code {code}'})")
    return path


def _widen_pipe(pipe) -> None:
    """Let the pipe hold two 640x480 frames (1 MiB, Linux's default limit): with the default 64 KiB
    each frame's write waited on ffmpeg's reads several times."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):  # not Linux, or a lower limit: the default size
        pass
