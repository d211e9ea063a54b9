"""Seconds of compute per minute of audio for each feature recipe on the danced parts of Dance with Melody.

    .venv/bin/python benchmarks/audio_features.py [--fps 25] [--limit N] [--data ../shared/data/dance_with_melody]

Prints a markdown table: decoding, each recipe alone, both recipes in one `features_many` call
(one decode, shared STFT/mel/HPSS), and the second call that reads the cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dancegen.audio import RECIPES, compute_features, context_frames, features_many, load, sample_rate_for

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dance_with_melody"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sequences")
    args = parser.parse_args()
    fps, sr = args.fps, sample_rate_for(args.fps)
    songs = sorted(d for d in args.data.iterdir() if (d / "audio.mp3").exists())[: args.limit]
    if not songs:
        raise SystemExit(f"{args.data}: no DANCE_*/audio.mp3")
    rng = np.random.default_rng(0)
    compute_features(rng.standard_normal(int(sr) * 3).astype(np.float32) * 0.1, RECIPES, fps)  # JIT warm-up

    seconds = {"decode": 0.0, **{name: 0.0 for name in RECIPES}, "both (features_many)": 0.0, "cache hit": 0.0}
    minutes = 0.0
    with tempfile.TemporaryDirectory() as cache:
        for song in songs:
            # The danced part at 25 fps, as Dance with Melody's config.json gives it.
            config = json.loads((song / "config.json").read_text())
            start = config["start_position"] / 25.0
            num_frames = int(round((config["end_position"] - config["start_position"]) / 25.0 * fps))
            minutes += num_frames / fps / 60
            ctx = context_frames(fps) / fps
            t = time.perf_counter()
            y = load(song / "audio.mp3", sr, offset=max(0.0, start - ctx), duration=num_frames / fps + 2 * ctx)
            seconds["decode"] += time.perf_counter() - t
            for name in RECIPES:
                t = time.perf_counter()
                compute_features(y, [name], fps)
                seconds[name] += time.perf_counter() - t
            for key in ("both (features_many)", "cache hit"):
                t = time.perf_counter()
                features_many(song / "audio.mp3", RECIPES, fps, start=start, num_frames=num_frames, cache_dir=cache)
                seconds[key] += time.perf_counter() - t

    print(f"{len(songs)} sequences, {minutes:.1f} minutes of danced audio, fps {fps:g} (sr {sr:g} Hz), "
          f"{context_frames(fps) / fps:g} s of context either side\n")
    print("| step | seconds in all | seconds per minute of audio |")
    print("|---|---|---|")
    for key, s in seconds.items():
        print(f"| {key} | {s:.1f} | {s / minutes:.2f} |")


if __name__ == "__main__":
    main()
