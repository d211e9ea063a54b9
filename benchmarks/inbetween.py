"""In-betweening benchmark (issue 6): LaFAN1's protocol on Dance with Melody's held-out (test) split.

Windows every 40 frames through each test sequence: 10 context frames, a gap of 5, 15 or 30 frames
(at the data's 25 fps), 1 target frame; L2P, L2Q and NPSS on the gap (dancegen/metrics/inbetween.py
says exactly how). Rows: interpolation (root linear, rotations slerped), each masked model given with
the music of the window and without it, linear interpolation of the 6-D features (the masked model's
hint without its correction), and a diffusion model's in-painting when one is given.

    .venv/bin/python benchmarks/inbetween.py --model out/masked/best [--diffusion out/diffusion/best] -o out/bench-inbetween
    .venv/bin/python benchmarks/inbetween.py --model out/masked-bridge/best --correction-scale 0.5 --limit 2
    .venv/bin/python benchmarks/inbetween.py --split val --model FOLDER   (choose models and scales here, not on test)
    .venv/bin/python benchmarks/inbetween.py --split val --model out/masked-positions-long/best --option correct_root=false

Prints the markdown table (docs/benchmark.md, "In-betweening (issue 6)") and writes results.json to -o.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dancegen.data.representation import motion_to_rot6d, rot6d_to_motion
from dancegen.inbetween import inbetween, interpolate, with_keys
from dancegen.metrics.inbetween import GAPS, evaluate_inbetweening, position_stats, table
from dancegen.models import load_model
from dancegen.models.masked import interpolate_frames
from dancegen.motion import Motion
from dancegen.training.train import prepared_data


def feature_interpolation(window: Motion, keys: np.ndarray, *_) -> Motion:
    """The masked model's interpolation hint alone (its correction left out): the root and every joint's
    6-D rotation features linear between the keys, each projected back to the nearest rotation."""
    known = torch.zeros(window.num_frames, dtype=torch.bool)
    known[keys] = True
    rot6d = interpolate_frames(torch.from_numpy(motion_to_rot6d(window))[None], known[None])[0]
    return with_keys(rot6d_to_motion(rot6d.numpy(), window.skeleton, window.fps), window, keys)


def scaled_correction(model, scale: float):
    """A copy of a masked model (`correction: bridge`) whose learned correction of its hint is `scale` times
    its own (0: the hint alone)."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.correct.weight.mul_(scale)
        scaled.correct.bias.mul_(scale)
    return scaled


def with_option(model, option: str):
    """A copy of a masked model with one of its filling options changed, `NAME=VALUE` (YAML value), e.g.
    correction_gate=linear or correct_root=false: what that choice does to a trained model."""
    import yaml

    name, _, value = option.partition("=")
    if name not in ("correction_gate", "correct_root", "correction_horizon"):
        sys.exit(f"--option takes correction_gate, correct_root or correction_horizon, not {name!r}")
    changed = copy.deepcopy(model)
    setattr(changed, name, yaml.safe_load(value))
    return changed


def model_filler(model, data, music: bool):
    """A model's `fill` (masked or diffusion: `dancegen inbetween --model`) on a window, with the window's
    music or without. The diffusion family keeps the keys exactly and bends its root path through them."""
    def fill(window: Motion, keys: np.ndarray, name: str, start: int) -> Motion:
        feats = None
        if music:
            feats = np.concatenate([np.asarray(data.array(name, f)[start:start + window.num_frames])
                                    for f in model.music_features], axis=1)
        return inbetween(model, window, keys, music_features=feats, style=data.sequences[name].get("style"))
    return fill


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/dwm", help="prepared Dance with Melody (prepared from --source if absent)")
    p.add_argument("--source", default="dance-with-melody:../shared/data/dance_with_melody")
    p.add_argument("--split", default="test")
    p.add_argument("--model", action="append", default=[], help="a saved masked model folder (repeatable)")
    p.add_argument("--correction-scale", type=float, action="append", default=[], metavar="A",
                   help="also score each masked model (with music) with its learned correction times A (a model "
                        "with correction: bridge; repeatable): does the correction help at all?")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="also score each masked model (with music) with this filling option changed "
                        "(correction_gate=linear, correct_root=false, correction_horizon=H; repeatable)")
    p.add_argument("--diffusion", default=None, help="a saved diffusion model folder, for its in-painting")
    p.add_argument("--limit", type=int, default=None, help="only the first N sequences (a quick look)")
    p.add_argument("-o", "--out", default=None, help="folder for results.json")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    data = prepared_data({"path": args.data, "source": args.source})
    names = data.split(args.split)[: args.limit]
    sequences = {n: data.motion(n) for n in names}
    stats = position_stats(data.motion(n) for n in data.split("train"))
    methods = {"interpolation": lambda window, keys, *_: interpolate(window, keys),
               "linear in 6-D features (the masked model's hint)": feature_interpolation}
    for path in args.model:
        model = load_model(path)
        methods[f"masked ({path})"] = model_filler(model, data, music=True)
        methods[f"masked ({path}), no music"] = model_filler(model, data, music=False)
        if args.correction_scale and getattr(model, "correction", None) != "bridge":
            sys.exit(f"{path}: --correction-scale needs a masked model with correction: bridge")
        for scale in args.correction_scale:
            methods[f"masked ({path}), correction × {scale:g}"] = model_filler(scaled_correction(model, scale), data,
                                                                             music=True)
        for option in args.option:
            methods[f"masked ({path}), {option}"] = model_filler(with_option(model, option), data, music=True)
    if args.diffusion:
        methods[f"diffusion in-painting ({args.diffusion})"] = model_filler(load_model(args.diffusion), data, music=True)
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
