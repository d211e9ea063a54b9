"""Which geometric features make a model's fid_g huge? (docs/benchmark.md, "In-betweening (issue 6)")

FID_g normalises every one of the 32 geometric features (dancegen/metrics/geometric.py) by the ground
truth's std over the test split's windows plus 1e-10, as Bailando does. A feature the ground truth holds
constant (std 0) turns any difference of a model's into ~10¹⁴. This scores one model's dances (seed 0,
the default protocol's 5-s windows at 60 fps) and lists the features with the largest normalised
squared difference of means plus variance (the terms of FID's diagonal), with the ground truth's mean
and std and the model's mean, and the 60-fps frames of each dance where the largest one holds.

    .venv/bin/python benchmarks/fid_g_features.py --model out/masked/best [--limit 3]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from dancegen.metrics.benchmark import EVAL_FPS, PROTOCOLS, Song, score_dance
from dancegen.metrics.distribution import normalise
from dancegen.metrics.geometric import _Frames, _relations, HL, HW, SW
from dancegen.models import Music, load_model
from dancegen.training.train import prepared_data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a saved model folder")
    p.add_argument("--data", default="data/dwm", help="prepared Dance with Melody (prepared from --source if absent)")
    p.add_argument("--source", default="dance-with-melody:../shared/data/dance_with_melody")
    p.add_argument("--limit", type=int, default=None, help="only the first N test songs")
    p.add_argument("--top", type=int, default=5)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    data = prepared_data({"path": args.data, "source": args.source})
    protocol, names = PROTOCOLS["default"], data.split("test")
    no_beats = np.zeros(0)
    truth = np.concatenate([score_dance(data.motion(n), Song(n, None, no_beats), protocol).geometric for n in names])
    model = load_model(args.model)
    dances = {}
    for n in names[: args.limit]:
        meta = data.sequences[n]
        music = Music({f: np.asarray(data.array(n, f)) for f in data.features_of("music")}, data.fps,
                      start=meta["offset"], style=meta["style"], beats=no_beats)
        dances[n] = model.generate(music, length=meta["frames"], seed=0)
    ours = np.concatenate([score_dance(m, Song(n, None, no_beats), protocol).geometric for n, m in dances.items()])
    f, _ = normalise(ours, truth)
    terms = f.mean(0) ** 2 + f.var(0)
    order = np.argsort(-terms)[: args.top]
    print(f"{len(truth)} ground-truth windows, {len(ours)} of {args.model} ({len(dances)} songs)")
    print("| feature (0-based, Bailando's order) | normalised term | truth mean | truth std | model mean |")
    print("|---|---|---|---|---|")
    for i in order:
        print(f"| {i} | {terms[i]:.3g} | {truth[:, i].mean():.4g} | {truth[:, i].std():.3g} | {ours[:, i].mean():.4g} |")
    worst = int(order[0])
    for n, m in dances.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            holds = _relations(_Frames(m.resample(EVAL_FPS).positions()), HL, SW, HW)[worst]
        frames = np.nonzero(holds)[0] + 1
        print(f"{n}: feature {worst} holds at 60-fps frames {frames[:10].tolist()} "
              f"(the model's frames {np.round(frames[:10] * model.fps / EVAL_FPS, 1).tolist()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
