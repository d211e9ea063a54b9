"""Generation speed of a model on this CPU: seconds to dance a song whose features already exist.

    .venv/bin/python benchmarks/generation_speed.py [--model default] [--seconds 180] [--steps 5,10,20]

Music features are random numbers of the right shape (speed does not depend on them). Prints, per
number of DDIM steps, the best of `--repeats` runs, the real-time factor and seconds per second of
dance (issue 4 asks for a 3-minute song in under 2 s on 2 cores: at least 90x real time).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dancegen.models import Music, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=180.0, help="song length (default 180)")
    parser.add_argument("--steps", default=None, help="comma-separated DDIM step counts (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    frames = int(args.seconds * model.fps)
    rng = np.random.default_rng(0)
    music = Music({f: rng.normal(size=(frames, d)).astype(np.float32)
                   for f, d in zip(model.music_features, model.music_dims)}, model.fps)
    steps = [int(s) for s in args.steps.split(",")] if args.steps else [model.sample_steps]
    print(f"model {args.model}: {model.num_parameters / 1e6:.2f} M parameters, {torch.get_num_threads()} threads, "
          f"{args.seconds:g} s song ({frames} frames at {model.fps:g} fps)")
    print("| DDIM steps | guidance | seconds | × real time | s per s of dance |\n|---|---|---|---|---|")
    model.generate(Music({k: v[:200] for k, v in music.features.items()}, model.fps), steps=steps[0])  # warm-up
    for n in steps:
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            model.generate(music, seed=r, steps=n, guidance=args.guidance)
            times.append(time.perf_counter() - start)
        best = min(times)
        guidance = model.guidance if args.guidance is None else args.guidance
        print(f"| {n} | {guidance:g} | {best:.2f} | {args.seconds / best:.0f} | {best / args.seconds:.4f} |")


if __name__ == "__main__":
    main()
