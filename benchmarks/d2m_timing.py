"""d2m's training step and inference time against batch size, on the CPU and, when CUDA is there, a GPU.

    .venv/bin/python benchmarks/d2m_timing.py [--config configs/d2m.yaml] [--batches 1,4,16,64]
        [--threads 1] [--repeats 5]

The Dancing-to-Music report compares CPU and GPU time by batch size; this is that table for
dancegen's d2m. A model of the config's size with random weights (time does not depend on them).
A training window and an inference window are `window_units` units (10 s at configs/d2m.yaml's
sizes). "training step" is one optimiser step (loss, backward, AdamW) of each stage on a batch of
windows; "inference" composes and decodes a batch of windows (`D2MModel.compose`: the composer, then
the units one after another). Median of `--repeats` after one warm-up. Prints a markdown table; the
GPU columns are "–" without CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dancegen.data.representation import motion_to_rot6d
from dancegen.motion import Motion, smpl_skeleton


def untrained(config_path: str):
    """A d2m model with random weights of a training config's size (fact35: 35 music values a frame)."""
    from dancegen.models.d2m import D2MModel
    from dancegen.training.train import read_config

    config = dict(read_config(config_path)["model"])
    config.pop("family")
    dims = {"fact35": 35, "bailando438": 438}
    return D2MModel(**config, music_dims=[dims[f] for f in config.get("music_features", ["fact35"])])


def batch_of(model, size: int, device: str) -> dict:
    """`size` training windows of random music and a random (smooth) dance."""
    frames = model.windows()[0][model.music_features[0]][0]
    rng = np.random.default_rng(0)
    rotations = np.cumsum(rng.normal(0, 0.02, (frames + 1, 24, 3)), 0)
    root = np.cumsum(rng.normal(0, 0.01, (frames + 1, 3)), 0) + [0, 0.9, 0]
    rot6d = torch.from_numpy(motion_to_rot6d(Motion(model.fps, smpl_skeleton(), root, rotations)))
    music = torch.from_numpy(rng.normal(size=(size, frames, sum(model.music_dims))).astype(np.float32))
    return {"inputs": {model.music_features[0]: music.to(device)},
            "outputs": {"rot6d": rot6d[None].expand(size, -1, -1).contiguous().to(device)}}


def timed(run, device: str, repeats: int) -> float:
    """Median seconds of `run()` over `repeats`, after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config: str, size: int, device: str, repeats: int) -> dict[str, float]:
    """Seconds of a training step of each stage and of an inference, for a batch of `size` windows."""
    torch.manual_seed(0)
    model = untrained(config).to(device)
    batch = batch_of(model, size, device)
    out = {}
    for stage in model.stages:
        model.set_stage(stage)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step():
            loss, _ = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        out[stage] = timed(step, device, repeats)
    model.eval()
    music = batch["inputs"][model.music_features[0]]
    pose = torch.zeros(size, model.pose_latent, device=device)
    generator = torch.Generator(device).manual_seed(0)
    out["inference"] = timed(lambda: model.compose(music, pose, generator), device, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/d2m.yaml")
    parser.add_argument("--batches", default="1,4,16,64", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    model = untrained(args.config)
    seconds = model.window_units * model.unit / model.fps
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"{args.config}: {model.num_parameters:,} parameters, windows of {seconds:g} s; CPU: {args.threads} torch "
          f"thread(s); GPU: {gpu}; median of {args.repeats}, milliseconds per batch\n")
    print("| batch | train step `vae` CPU | GPU | train step `compose` CPU | GPU | inference CPU | GPU "
          "| inference CPU per window |\n|---|---|---|---|---|---|---|---|")
    for size in (int(b) for b in args.batches.split(",")):
        rows = {d: measure(args.config, size, d, args.repeats) for d in devices}
        cell = lambda d, k: f"{1000 * rows[d][k]:.0f}" if d in rows else "–"
        print(f"| {size} | {cell('cpu', 'vae')} | {cell('cuda', 'vae')} | {cell('cpu', 'compose')} "
              f"| {cell('cuda', 'compose')} | {cell('cpu', 'inference')} | {cell('cuda', 'inference')} "
              f"| {1000 * rows['cpu']['inference'] / size:.1f} |", flush=True)


if __name__ == "__main__":
    main()
