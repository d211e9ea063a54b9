"""In-betweening benchmark (issue 6): LaFAN1's protocol on Dance with Melody's held-out (test) split.

Windows every 40 frames through each test sequence: 10 context frames, a gap of 5, 15 or 30 frames
(at the data's 25 fps), 1 target frame; L2P, L2Q and NPSS on the gap (dancegen/metrics/inbetween.py
says exactly how). Rows: interpolation (root linear, rotations slerped), each masked model given with
the music of the window and without it, and a diffusion model's in-painting when one is given.

    .venv/bin/python benchmarks/inbetween.py --model out/masked/best [--diffusion out/diffusion/best] -o out/bench-inbetween

Prints the markdown table (docs/benchmark.md, "In-betweening (issue 6)") and writes results.json to -o.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dancegen.data.representation import motion_to_rot6d
from dancegen.inbetween import inbetween, interpolate, with_keys
from dancegen.metrics.inbetween import GAPS, evaluate_inbetweening, position_stats, table
from dancegen.models import load_model
from dancegen.motion import Motion
from dancegen.motion.rotations import matrix_to_axis_angle
from dancegen.training.train import prepared_data


def masked_filler(model, data, music: bool):
    def fill(window: Motion, keys: np.ndarray, name: str, start: int) -> Motion:
        feats = None
        if music:
            feats = np.concatenate([np.asarray(data.array(name, f)[start:start + window.num_frames])
                                    for f in model.music_features], axis=1)
        return inbetween(model, window, keys, music_features=feats, style=data.sequences[name].get("style"))
    return fill


def diffusion_filler(model, data):
    """EDGE's in-painting with the diffusion family's sampler: the known frames' features are fixed after
    every denoising step. The target frame's root step (x/z since the frame before it, unknown) is left
    free, so the root path need not arrive at the target; the keys are then copied in like every method's."""
    from dancegen.models.diffusion import features_to_pose, rot6d_to_features

    def fill(window: Motion, keys: np.ndarray, name: str, start: int) -> Motion:
        rot6d = torch.from_numpy(motion_to_rot6d(window))
        x = (rot6d_to_features(rot6d) - model.motion_mean) / model.motion_std  # frames 1..L-1
        mask = torch.zeros_like(x, dtype=torch.bool)  # row k - 1 holds frame k
        for k in keys[keys > 0].tolist():
            mask[k - 1] = True
            mask[k - 1, 1:3] = k - 1 in keys  # a key's root step is known only when the frame before it is
        music = torch.from_numpy(np.concatenate([np.asarray(data.array(name, f)[start + 1:start + window.num_frames])
                                                 for f in model.music_features], axis=1))
        from dancegen.models.base import style_id

        out = model.sample(model.normalise_music(music), style=style_id(data.sequences[name].get("style")),
                           generator=torch.Generator().manual_seed(0), known=x, mask=mask)
        root, rotations = features_to_pose(out * model.motion_std + model.motion_mean, rot6d[0, [0, 2]])
        filled = Motion(window.fps, window.skeleton, np.concatenate([window.root_translation[:1], root.numpy()]),
                        np.concatenate([window.rotations[:1], matrix_to_axis_angle(rotations).numpy()]))
        return with_keys(filled, window, keys)
    return fill


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/dwm", help="prepared Dance with Melody (prepared from --source if absent)")
    p.add_argument("--source", default="dance-with-melody:../shared/data/dance_with_melody")
    p.add_argument("--split", default="test")
    p.add_argument("--model", action="append", default=[], help="a saved masked model folder (repeatable)")
    p.add_argument("--diffusion", default=None, help="a saved diffusion model folder, for its in-painting")
    p.add_argument("--limit", type=int, default=None, help="only the first N sequences (a quick look)")
    p.add_argument("-o", "--out", default=None, help="folder for results.json")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    data = prepared_data({"path": args.data, "source": args.source})
    names = data.split(args.split)[: args.limit]
    sequences = {n: data.motion(n) for n in names}
    stats = position_stats(data.motion(n) for n in data.split("train"))
    methods = {"interpolation": lambda window, keys, *_: interpolate(window, keys)}
    for path in args.model:
        model = load_model(path)
        methods[f"masked ({path})"] = masked_filler(model, data, music=True)
        methods[f"masked ({path}), no music"] = masked_filler(model, data, music=False)
    if args.diffusion:
        methods[f"diffusion in-painting ({args.diffusion})"] = diffusion_filler(load_model(args.diffusion), data)
    started = time.time()
    results = evaluate_inbetweening(sequences, methods, stats, GAPS, progress=True)
    print(f"{len(names)} {args.split} sequences, {next(iter(results.values()))[GAPS[0]].windows} windows per gap, "
          f"{time.time() - started:.0f} s")
    print(table(results))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(
            {m: {g: vars(s) for g, s in r.items()} for m, r in results.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
