"""How real training dances score on a split: the `random_real` baseline (a training dance of any
style, drawn for each song and seed) against the same draw among the training dances of the song's
own style only (`same_style`; a song whose style no training dance has draws among all), over
several sets of three seeds, each set scored as the benchmark scores its seeds 0, 1, 2. The last
column is FID_k over the songs of a style some training dance has (Dance with Melody's test tango
has none), against those songs' ground truth.

The `same_style` row is what a model would score that dances every song in the asked style exactly
as the training dances do; the spread over sets is how far the baseline's FID_k, the bar of the
main job, moves from one draw to the next.

    .venv/bin/python benchmarks/real_dances.py [--split test] [--sets 4] [--dataset KIND:PATH]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from dancegen.audio.cache import default_cache_dir
from dancegen.metrics.benchmark import PROTOCOLS, kinetic_fid_of_songs, run_benchmark, summarise
from dancegen.metrics.evaluate import parse_dataset, prepared_for
from dancegen.metrics.style import MotionStyleClassifier
from dancegen.models import DanceModel, load_model

COLUMNS = ("fid_k", "fid_g", "div_k", "bas_bailando", "style_accuracy", "fid_k, trained styles")


class SameStyle(DanceModel):
    """`random_real` drawing among the training dances of the song's style (all when it has none)."""

    def __init__(self, motions: list, styles: list[str]):
        self.fps = motions[0].fps
        self.any = load_model("random_real", train_motions=motions)
        self.pools = {s: load_model("random_real", train_motions=[m for m, t in zip(motions, styles) if t == s])
                      for s in set(styles)}

    def generate(self, music, **kwargs):
        return self.pools.get(music.style, self.any).generate(music, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--sets", type=int, default=4, help="sets of three seeds (0-2, 3-5, ...)")
    parser.add_argument("--dataset", default="dance-with-melody:../shared/data/dance_with_melody")
    args = parser.parse_args()
    seeds = tuple(range(3 * args.sets))
    kind, path = parse_dataset(args.dataset)
    data = prepared_for(kind, path, default_cache_dir(), False)
    styles = [data.sequences[n]["style"] for n in data.split("train")]
    classifier = MotionStyleClassifier.bundled("dance_with_melody")
    known = tuple(classifier.styles)
    result = run_benchmark(data, {"same_style": lambda train: SameStyle(train, styles)}, split=args.split,
                           protocol=replace(PROTOCOLS["default"], seeds=seeds), style_of=classifier.predict,
                           known_styles=known, progress=False)
    gt = result.scores["ground_truth"]
    reference = (np.concatenate([s.kinetic for s in gt]), np.concatenate([s.geometric for s in gt]))
    song_styles, trained = [s.style for s in result.songs], set(styles)
    rows = {}
    for row in ("random_real", "same_style"):
        scores = result.scores[row]  # song by song, seed by seed
        for g in range(args.sets):
            picked = [i for i in range(len(scores)) if 3 * g <= i % len(seeds) < 3 * g + 3]
            chosen = [scores[i] for i in picked]
            # against the split's ground truth only (its fid_*_train and freeze_rate columns are not read)
            summary = summarise(chosen, [song_styles[i // len(seeds)] for i in picked], reference, reference,
                                0.0, known)
            one_set = replace(result, scores={"ground_truth": gt, row: chosen})  # three seeds a song, in order
            summary[COLUMNS[-1]] = kinetic_fid_of_songs(one_set, lambda song: song.style in trained)[row][0]
            rows.setdefault(row, []).append([summary[c] for c in COLUMNS])
    truth = result.results["ground_truth"]
    print(f"{args.split} split, {len(result.songs)} songs; ground truth: div_k {truth['div_k']:.2f}, "
          f"bas_bailando {truth['bas_bailando']:.3f}\n")
    print("| row | seeds | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---|" * len(COLUMNS))
    for row, sets in rows.items():
        for g, values in enumerate(sets):
            print(f"| {row} | {3 * g}-{3 * g + 2} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
        values = np.array(sets, dtype=float)
        print(f"| {row} | mean ± std | " + " | ".join(f"{m:.3g} ± {s:.2g}" for m, s in
                                                    zip(values.mean(0), values.std(0))) + " |")


if __name__ == "__main__":
    main()
