"""Generation speed of models on this CPU: seconds to dance a song whose features already exist.

    .venv/bin/python benchmarks/generation_speed.py [--model default] [--model PATH ...] [--seconds 180]
        [--steps 5,10,20] [--config configs/diffusion.yaml ...]

`--config` times an untrained model of a training config's size (random weights: speed does not
depend on them), for a family with no trained model at hand.

Music features are random numbers of the right shape (speed does not depend on them). Prints one
row per model (per number of DDIM steps for a diffusion model): the best of `--repeats` runs,
frames per second of dance produced, the real-time factor and seconds per second of dance (issue 4
asks for a 3-minute song in under 2 s on 2 cores: at least 90x real time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dancegen.models import Music, load_model


def untrained(config_path: str):
    """A model with random weights built from a training config's `model` section (fact35 dims)."""
    from dancegen.models.base import _MODELS
    from dancegen.training.train import read_config

    config = dict(read_config(config_path)["model"])
    family = config.pop("family")
    dims = {"fact35": 35, "bailando438": 438}
    return _MODELS[family](**config, music_dims=[dims[f] for f in config.get("music_features", ["fact35"])]).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None, help="model name or folder (repeatable)")
    parser.add_argument("--config", action="append", default=[], help="a training config: time an untrained "
                        "model of its size (repeatable)")
    parser.add_argument("--seconds", type=float, default=180.0, help="song length (default 180)")
    parser.add_argument("--steps", default=None, help="comma-separated DDIM step counts (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.seconds:g}-s song, {torch.get_num_threads()} torch threads, best of {args.repeats}\n")
    print("| model | family | parameters | DDIM steps | seconds | dance frames/s | × real time | s per s of dance |\n"
          "|---|---|---|---|---|---|---|---|")
    for name in (args.model or ([] if args.config else ["default"])) + args.config:
        model = untrained(name) if name.endswith(".yaml") else load_model(name)
        frames = int(args.seconds * model.fps)
        rng = np.random.default_rng(0)
        music = Music({f: rng.normal(size=(frames, d)).astype(np.float32)
                       for f, d in zip(model.music_features, model.music_dims)}, model.fps)
        diffusion = hasattr(model, "sample_steps")
        steps = ([int(s) for s in args.steps.split(",")] if args.steps else [model.sample_steps]) if diffusion else [None]
        controls = {"guidance": args.guidance} if args.guidance is not None else {}
        model.generate(Music({k: v[:200] for k, v in music.features.items()}, model.fps),
                       **({"steps": steps[0]} if diffusion else {}))  # warm-up
        for n in steps:
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                model.generate(music, seed=r, **controls, **({"steps": n} if diffusion else {}))
                times.append(time.perf_counter() - start)
            best = min(times)
            label = ("/".join(Path(name).parts[-2:]) if Path(name).name in ("best", "last") else Path(name).name) \
                if Path(name).is_dir() else f"{Path(name).name} (untrained)" if name.endswith(".yaml") else name
            print(f"| {label} | {model.name} | {model.num_parameters / 1e6:.2f} M | {n or '–'} | {best:.2f} | "
                  f"{frames / best:.0f} | {args.seconds / best:.0f} | {best / args.seconds:.4f} |")


if __name__ == "__main__":
    main()
