"""The benchmark of a bailando model's choreographic memory alone: the test dances encoded to codes
and decoded again (`BailandoModel.reconstruct`), scored like any model, next to the model's own
dances. The reconstruction is the best the GPT could do with these codes, so a metric the
reconstruction misses is the tokenizer's to fix, and one only the generation misses is the GPT's.

A second table gives FID_k and Div_k of every row (the model's own generation included) over all
test songs and again without the songs whose style no training song has (Dance with Melody's one
tango): the split that shows which part of a gap the codes, the sampling or the unseen style cause.

A third gives, per test song, the generation's kinetic energies as a share of the ground truth's.
A fourth compares the kinetic features (per 5-s window at 60 fps, as the benchmark computes
them) of the reconstruction with the ground truth's: mean and spread over windows of the
horizontal and vertical kinetic energy and of the energy expenditure, averaged over joints, over
all test songs and without the songs whose style has no training song. A fifth gives, per test
song, the power of the root's vertical velocity (60 fps) in frequency bands, of the generation
(seeds averaged) and of the reconstruction as a share of the ground truth's: where a ripple the
decoder leaves in the root height shows (`height_sigma` smooths it; docs/benchmark.md).

    .venv/bin/python benchmarks/tokenizer_ceiling.py [--model default] [--dataset KIND:PATH] [--split test|val]
        [--height-sigma S]
"""

from __future__ import annotations

import argparse

import numpy as np

from dancegen.audio.cache import default_cache_dir
from dancegen.metrics.benchmark import PROTOCOLS, kinetic_fid_of_songs, run_benchmark
from dancegen.metrics.evaluate import parse_dataset, prepared_for
from dancegen.metrics.kinetic import kinetic_features
from dancegen.metrics.report import markdown_table
from dancegen.metrics.style import MotionStyleClassifier
from dancegen.models import DanceModel, load_model


class Played(DanceModel):
    """Plays given dances (the reconstructions), one per `generate`, in the benchmark's order."""

    def __init__(self, dances: list):
        self.fps, self.queue = dances[0].fps, list(dances)

    def generate(self, music, *, length=None, seed=0, **controls):
        return self.queue.pop(0)


class Recorded(DanceModel):
    """The model itself, keeping every dance it generates, in the benchmark's order."""

    def __init__(self, model):
        self.model, self.fps, self.dances = model, model.fps, []

    def generate(self, music, **kwargs):
        self.dances.append(self.model.generate(music, **kwargs))
        return self.dances[-1]


BANDS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 30))  # Hz


def root_vertical_power(motion) -> np.ndarray:
    """Power of the root's vertical velocity at 60 fps in each of BANDS (periodogram sums)."""
    v = np.diff(motion.resample(60.0).positions()[:, 0, 1]) * 60
    power, freq = np.abs(np.fft.rfft(v)) ** 2, np.fft.rfftfreq(len(v), 1 / 60)
    return np.array([power[(freq >= lo) & (freq < hi)].sum() / len(v) for lo, hi in BANDS])


def kinetic_windows(motion, seconds: float = 5.0) -> np.ndarray:
    """(windows, 24, 3) kinetic features of consecutive windows, positions from each window's root x/z."""
    p = motion.resample(60.0).positions()
    n = int(seconds * 60)
    return np.stack([kinetic_features(p[s:s + n] - p[s:s + 1, :1] * [1, 0, 1], fps=60)
                     for s in range(0, len(p) - n + 1, n)]).reshape(-1, 24, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--dataset", default="dance-with-melody:../shared/data/dance_with_melody")
    parser.add_argument("--split", default="test", choices=("test", "val"),
                        help="the split whose dances are rebuilt and danced (val: for choices made on it)")
    parser.add_argument("--height-sigma", type=float, help="smooth the root height by this instead of the model's "
                        "`height_sigma` (0: as decoded)")
    args = parser.parse_args()
    model = load_model(args.model)
    if args.height_sigma is not None:
        model.height_sigma = args.height_sigma
    kind, path = parse_dataset(args.dataset)
    data = prepared_for(kind, path, default_cache_dir(), False)
    seeds = PROTOCOLS["default"].seeds
    truth_of = {n: data.motion(n) for n in data.split(args.split)}
    rebuilt_of = {n: model.reconstruct(m) for n, m in truth_of.items()}  # once per song, for every table
    played = [rebuilt_of[n] for n in data.split(args.split) for _ in seeds]  # the benchmark's order
    classifier = MotionStyleClassifier.bundled("dance_with_melody")
    recorded = Recorded(model)
    result = run_benchmark(data, {"reconstruction": lambda train: Played(played),
                                  "generation": lambda train: recorded},
                           split=args.split, style_of=classifier.predict, known_styles=tuple(classifier.styles),
                           progress=False)
    print(f"model {args.model}: the {args.split} split's dances through its codes, and its own dances\n")
    print(markdown_table(result.results))
    trained = {data.sequences[n]["style"] for n in data.split("train")}
    songs = [s.name for s in result.songs]
    seen = kinetic_fid_of_songs(result, lambda song: data.sequences[song.name]["style"] in trained)
    every = kinetic_fid_of_songs(result, lambda song: True)
    print("\n| row | fid_k, all songs | div_k | fid_k, styles with training songs | div_k |\n|---|---|---|---|---|")
    for row in result.scores:
        print(f"| {row} | {every[row][0]:.1f} | {every[row][1]:.2f} | {seen[row][0]:.1f} | {seen[row][1]:.2f} |")
    print("\n| song | style | generation ÷ ground truth: horizontal energy | vertical | expenditure |"
          "\n|---|---|---|---|---|")
    per = len(result.scores["generation"]) // len(songs)
    for i, name in enumerate(songs):  # kinetic features averaged over the song's windows, then over joints
        truth = result.scores["ground_truth"][i].kinetic.reshape(-1, 24, 3).mean(0)
        danced = np.concatenate([s.kinetic for s in result.scores["generation"][i * per:(i + 1) * per]])
        ratio = (danced.reshape(-1, 24, 3).mean(0) / truth).mean(0)
        print(f"| {name} | {data.sequences[name]['style']} | " + " | ".join(f"{100 * r:.0f} %" for r in ratio) + " |")
    print(f"\n| {args.split} songs | windows | horizontal energy mean / spread | vertical | expenditure |"
          "\n|---|---|---|---|---|")
    for label, names in (("all", data.split(args.split)),
                         ("styles with training songs", [n for n in data.split(args.split)
                                                         if data.sequences[n]["style"] in trained])):
        truth = np.concatenate([kinetic_windows(truth_of[n]) for n in names])
        rebuilt = np.concatenate([kinetic_windows(rebuilt_of[n]) for n in names])
        mean = (rebuilt.mean(0) / truth.mean(0)).mean(0)
        spread = (rebuilt.std(0) / truth.std(0)).mean(0)
        print(f"| {label} | {len(truth)} | " + " | ".join(f"{100 * m:.0f} % / {100 * s:.0f} %"
                                                          for m, s in zip(mean, spread)) + " |")
    bands = " | ".join(f"{lo}-{hi} Hz" for lo, hi in BANDS)
    print(f"\n| song | style | the root's vertical velocity, power ÷ ground truth's: generation, {bands} "
          f"| reconstruction, {bands} |\n|---|---|" + "---|" * (2 * len(BANDS)))
    for i, name in enumerate(songs):
        truth = root_vertical_power(truth_of[name])
        danced = np.mean([root_vertical_power(m) for m in recorded.dances[i * per:(i + 1) * per]], axis=0)
        rebuilt = root_vertical_power(rebuilt_of[name])
        print(f"| {name} | {data.sequences[name]['style']} | "
              + " | ".join(f"{x:.2f}" for x in np.concatenate([danced / truth, rebuilt / truth])) + " |")


if __name__ == "__main__":
    main()
