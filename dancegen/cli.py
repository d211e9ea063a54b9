"""The `dancegen` command. Thin: each subcommand parses options and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from .errors import UserError


def _prepare(args: argparse.Namespace) -> None:
    from .data.prepare import prepare

    recipes = tuple(r for r in args.features.split(",") if r) if args.features else ()
    manifest = prepare(args.kind, args.src, args.out, recipes=recipes, jobs=args.jobs,
                       cache_dir=args.cache_dir, seed=args.seed, progress=not args.quiet)
    seqs = manifest["sequences"]
    minutes = sum(s["frames"] / s["fps"] for s in seqs.values()) / 60
    dims = ", ".join(f"{name} ({feature['dim']})" for name, feature in manifest["features"].items())
    print(f"prepared {len(seqs)} sequences ({minutes:.1f} min at {manifest['fps']:g} fps) into {args.out}: "
          f"features {dims}; splits {manifest['splits']}; "
          f"{len(seqs) - manifest['prepared_now']} unchanged sequences reused")


def _info(args: argparse.Namespace) -> None:
    path = Path(args.path)
    if (path / "dataset.json").is_file():
        from .data import PreparedDataset

        data = PreparedDataset(path)
        kind = f"prepared {data.manifest['kind']}"
        seqs = [(s["frames"], s["fps"], s["style"]) for s in data.sequences.values()]
        extra = [f"features: {', '.join(f'{k} ({d})' for k, d in data.features.items())}",
                 f"splits: {data.manifest['splits']}"]
    else:
        from tqdm import tqdm

        from .datasets import detect_kind, open_dataset

        kind = detect_kind(path)
        dataset = open_dataset(kind, path)
        seqs, extra = [], []
        for seq in tqdm(dataset, total=len(dataset), desc="reading", unit="seq", disable=args.quiet):
            seqs.append((seq.motion.num_frames, seq.motion.fps, seq.style))
            if seq.features:
                extra = [f"dataset features: {', '.join(f'{k} ({v.shape[1]})' for k, v in seq.features.items())}"]
    styles = Counter(style for _, _, style in seqs)
    print("\n".join([
        f"path: {path}",
        f"kind: {kind}",
        f"sequences: {len(seqs)}",
        f"minutes: {sum(t / fps for t, fps, _ in seqs) / 60:.1f}",
        f"fps: {', '.join(f'{f:g}' for f in sorted({fps for _, fps, _ in seqs}))}",
        f"styles: {', '.join(f'{s} ({c})' for s, c in sorted(styles.items(), key=lambda kv: str(kv[0])))}",
        *extra,
    ]))


def _features(args: argparse.Namespace) -> None:
    from . import audio
    from .io import save_npy, write_text

    song = Path(args.song)
    recipes = [r for r in args.features.split(",") if r]
    arrays = audio.features_many(song, recipes, args.fps, cache_dir=args.cache_dir)
    track = audio.beats(audio.load(song, 44100), 44100)
    out = Path(args.out)
    for recipe, array in arrays.items():
        save_npy(out / f"{song.stem}.{recipe}.npy", array)
    write_text(out / f"{song.stem}.beats.txt", "".join(f"{t:.4f}\n" for t in track.times))
    frames = len(next(iter(arrays.values()))) if arrays else 0
    shapes = ", ".join(f"{r} {a.shape}" for r, a in arrays.items())
    print(f"{song.name}: {frames / args.fps:.1f} s, {track.bpm:.1f} BPM, {len(track.times)} beats; "
          f"wrote {shapes} and beat times to {out}")


def _demo(args: argparse.Namespace) -> None:
    """`dancegen generate -o OUT` on the bundled demo song with the bundled default model."""
    defaults = build_parser().parse_args(["generate", "-o", args.out])
    _generate(defaults)


def _evaluate(args: argparse.Namespace) -> None:
    from .metrics.evaluate import evaluate

    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    print(evaluate(args.model, args.dataset, args.out, split=args.split, protocol=args.protocol, seeds=seeds,
                   cache_dir=args.cache_dir, progress=not args.quiet))


def _serve(args: argparse.Namespace) -> None:
    from .serve import serve

    serve(args.host, args.port, workers=args.workers, models_dir=args.models, data_dir=args.data,
          max_upload_mb=args.max_upload_mb, max_minutes=args.max_minutes)


def _train(args: argparse.Namespace) -> None:
    from .training import train

    train(args.config, args.out, max_minutes=args.max_minutes, max_steps=args.max_steps, progress=not args.quiet,
          resume=args.resume)


def _generate(args: argparse.Namespace) -> None:
    import os
    import time

    # Before torch loads: its OpenMP threads sleep when idle instead of spinning. The same numbers;
    # on cores busy with other work, spinning threads made the 206-s song's motion 4x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .generation import generate_dance, generate_many, write_outputs

    started = time.time()
    if args.device != "cpu":
        import torch

        torch.set_default_device(args.device)
    formats = tuple(f for f in args.formats.split(",") if f)
    controls = {} if args.temperature is None else {"temperature": args.temperature}
    if args.key_poses:
        from .generation import read_seed_motion

        controls.update(key_poses=read_seed_motion(args.key_poses), key_beats=args.key_beats)
    if args.stitch:
        controls["stitch"] = args.stitch
    options = dict(seed=args.seed, style=args.style, start=args.start, duration=args.duration,
                   seed_motion=args.seed_motion, **controls)
    if len(args.songs) > 1 or any(Path(s).is_dir() for s in args.songs):
        results = generate_many(args.songs, args.out, model=args.model, formats=formats, jobs=args.jobs,
                                overwrite=args.overwrite, device=args.device, report=lambda line: print(line, flush=True),
                                **options)
        failed = [r.song.name for r in results if r.status == "failed"]
        done = sum(r.status == "done" for r in results)
        print(f"{done} generated, {len(results) - done - len(failed)} skipped, {len(failed)} failed of "
              f"{len(results)} songs into {args.out} in {time.time() - started:.1f} s")
        if failed:
            raise UserError(None, f"{len(failed)} of {len(results)} songs failed: {', '.join(failed)}")
        return
    result = generate_dance(args.songs[0] if args.songs else None, model=args.model, prefetch_mp3="html" in formats,
                            progress=not args.quiet, **options)
    written = write_outputs(result, args.out, formats, progress=not args.quiet)
    print(f"{result.song.name}: {result.motion.duration:.1f} s of dance from {result.start:g} s"
          f"{f', style {result.style}' if result.style else ''}, seed {args.seed}, in {time.time() - started:.1f} s: "
          + ", ".join(str(p) for p in written))


def _inbetween(args: argparse.Namespace) -> None:
    import time

    from .inbetween import inbetween_file

    started = time.time()
    keys = None
    if args.keys is not None:
        try:
            keys = [int(k) for k in args.keys.split(",") if k.strip()]
        except ValueError:
            raise UserError(None, f"--keys takes frame numbers separated by commas, got {args.keys!r}") from None
    if args.every is None and keys is None and args.keep_joints is None:
        raise UserError(args.motion, "give --every N, --keys I,J,… or --keep-joints")
    motion, key_frames, written = inbetween_file(
        args.motion, args.out, every=args.every, keys=keys, song=args.song, start=args.start, model=args.model,
        style=args.style, keep_joints=args.keep_joints, formats=tuple(f for f in args.formats.split(",") if f), progress=not args.quiet)
    print(f"{Path(args.motion).name}: {motion.num_frames} frames ({motion.duration:.1f} s) through {len(key_frames)} "
          f"keyframes{f' to {Path(args.song).name}' if args.song else ''} by {args.model} in {time.time() - started:.1f} s: "
          + ", ".join(str(p) for p in written))


def _read_motion(path: str):
    """A .bvh or dancegen .npz motion file; UserError naming it otherwise."""
    from .errors import require_file
    from .generation import read_seed_motion

    if Path(path).suffix.lower() not in (".bvh", ".npz"):
        raise UserError(path, "a motion must be a .bvh or a dancegen .npz")
    return read_seed_motion(require_file(path))


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise UserError(None, f"--size takes WIDTHxHEIGHT in pixels, e.g. 512x512, not {text!r}") from None
    return w, h


def _frame_range(text: str | None) -> slice | None:
    if text is None:
        return None
    try:
        start, stop = ((int(x) if x.strip() else None) for x in text.split(":"))
    except ValueError:
        raise UserError(None, f"--frames takes START:STOP frame numbers (either may be left out), not {text!r}") from None
    return slice(start, stop)


def _render(args: argparse.Namespace) -> None:
    from .render.pose_images import write_pose_images

    motion = _read_motion(args.motion)
    try:
        out, count = write_pose_images(
            motion, args.pose_images, size=_size(args.size), fps=args.fps, view=args.camera, azimuth=args.azimuth,
            elevation=args.elevation, distance=args.distance, frames=_frame_range(args.frames), progress=not args.quiet)
    except UserError as e:
        raise UserError(e.path or args.motion, e.problem) from None
    print(f"{Path(args.motion).name}: {count} OpenPose-style pose images ({args.size}, {args.camera} camera) and "
          f"keypoints.json in {out}")


def _video(args: argparse.Namespace) -> None:
    import time

    from .render.pose_video import render_pose_video

    started = time.time()
    motion = _read_motion(args.motion)
    camera = dict(view=args.camera, azimuth=args.azimuth, elevation=args.elevation, distance=args.distance)
    try:
        out, frames = render_pose_video(
            motion, args.out, prompt=args.prompt, negative_prompt=args.negative_prompt, base_model=args.base_model,
            controlnet=args.controlnet, motion_adapter=args.motion_adapter, song=args.song, song_offset=args.start,
            fps=args.fps, size=_size(args.size), window=args.window, overlap=args.overlap, steps=args.steps,
            guidance=args.guidance, control_scale=args.control_scale, seed=args.seed, device=args.device,
            camera=camera, progress=not args.quiet)
    except UserError as e:
        raise UserError(e.path or args.motion, e.problem) from None
    print(f"{Path(args.motion).name}: {frames} frames at {args.fps:g} fps from its pose images"
          f"{f' with {Path(args.song).name}' if args.song else ''} in {time.time() - started:.1f} s: {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dancegen", description="Music-driven 3D dance generation.")
    parser.add_argument("--version", action="version", version=f"dancegen {__import__('dancegen').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="turn a dataset folder into the prepared training layout")
    p.add_argument("kind", help="dataset kind: dance-with-melody, aist, motorica, bvh-wav")
    p.add_argument("src", help="dataset folder")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--features", default="fact35,bailando438",
                   help="comma-separated audio recipes (default: fact35,bailando438; empty for none)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--cache-dir", default=None, help="audio feature cache (default: $DANCEGEN_CACHE or ~/.cache/dancegen)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("generate", help="dance to songs: NAME.bvh, .npz, .mp4 and .html in the output folder")
    p.add_argument("songs", nargs="*", metavar="song",
                   help="song files or folders of songs (default: the bundled demo song); with several, a pool of "
                        "workers dances to them and skips songs whose outputs are all there (a rerun resumes)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default="default", help="model name or saved-model folder (default: the bundled one)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same dance")
    p.add_argument("--style", default="auto", help="a style the model knows, or auto: read it from the music")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the song to start dancing")
    p.add_argument("--duration", type=float, default=None, help="seconds to dance (default: to the end)")
    p.add_argument("--seed-motion", default=None, help="a dance to continue, .bvh or .npz")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature of a probabilistic model: higher, more varied dances (default: "
                        "the model's own)")
    p.add_argument("--key-poses", default=None,
                   help="a .bvh or .npz whose frames are poses for the dance to strike on the beats, in turn "
                        "(a diffusion model; Beat-It's beat-aware key frames)")
    p.add_argument("--key-beats", type=int, default=4, help="with --key-poses: a pose on every Nth beat (default 4)")
    p.add_argument("--stitch", choices=("average", "bidirectional"), default=None,
                   help="how a diffusion model joins its overlapping windows: average the overlaps, or BADM's "
                        "two passes conditioned on the previous and next window (default: the model's own)")
    p.add_argument("--formats", default="bvh,npz,mp4,html", help="comma-separated outputs of bvh,npz,mp4,html,glb,smpl")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes for several songs (default: one per core, at most one per song)")
    p.add_argument("--overwrite", action="store_true", help="with several songs: redo those whose outputs exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_generate)

    p = sub.add_parser("features", help="a song's audio features and beats")
    p.add_argument("song")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--fps", type=float, default=30.0, help="feature frames per second (default 30)")
    p.add_argument("--features", default="fact35,bailando438", help="comma-separated audio recipes")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: $DANCEGEN_CACHE or ~/.cache/dancegen)")
    p.set_defaults(func=_features)

    p = sub.add_parser("serve", help="a local web app: upload a song, generate, watch in 3D, download BVH/GLB/MP4")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=2, help="dances made at once, one process each (default 2)")
    p.add_argument("--models", default=None, help="a folder of saved-model folders to offer beside the default")
    p.add_argument("--data", default=None, help="folder for uploads and outputs (default: a temporary one)")
    p.add_argument("--max-upload-mb", type=float, default=100, help="largest song file taken (default 100 MB)")
    p.add_argument("--max-minutes", type=float, default=10, help="longest song taken (default 10 minutes)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", help="the main job on the bundled demo song: dancegen generate -o out/demo")
    p.add_argument("-o", "--out", default="out/demo", help="output folder (default out/demo)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("evaluate", help="score models and the baselines on a dataset split (docs/benchmark.md)")
    p.add_argument("--model", action="append", default=[],
                   help="a model name or saved-model folder; repeat for several (ground_truth, random_real "
                        "and still_pose rows are always there)")
    p.add_argument("--dataset", required=True, help="KIND:PATH of a raw dataset, prepared on the fly (cached)")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    p.add_argument("--protocol", default=None, choices=["default", "aist"],
                   help="default: 5-s windows; aist: Bailando's 20-s AIST++ protocol (the default for aist)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds per song (default 0,1,2)")
    p.add_argument("-o", "--out", required=True, help="output folder: results.json, results.md, plots/")
    p.add_argument("--cache-dir", default=None, help="cache (default: $DANCEGEN_CACHE or ~/.cache/dancegen)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="train a model from a YAML config (configs/*.yaml) into a saved-model folder")
    p.add_argument("config", help="training config, e.g. configs/diffusion.yaml")
    p.add_argument("-o", "--out", default=None, help="output folder (default: the config's `out`): best/, last/, logs/")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed or stopped run from OUT/checkpoints (finished stages are skipped)")
    p.set_defaults(func=_train)

    p = sub.add_parser("inbetween", help="keep a dance's key poses and generate the frames between them")
    p.add_argument("motion", help="a dance, .bvh or dancegen .npz, on the SMPL skeleton")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--every", type=int, default=None, help="keep frames 0, N, 2N, … and the last")
    keys.add_argument("--keys", default=None, help="keep these frames: comma-separated frame numbers from 0")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--song", default=None, help="a song to move to between the keyframes (default: none)")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the song where the motion starts")
    p.add_argument("--model", default="interpolation",
                   help="a saved masked or diffusion model folder (`dancegen train configs/masked.yaml` makes "
                        "out/masked/best), or interpolation: root linear, joint rotations slerped (the default: "
                        "no trained in-betweening model ships with dancegen)")
    p.add_argument("--style", default=None, help="a style the model knows (default: none)")
    p.add_argument("--keep-joints", default=None,
                   help="also keep these joints at every frame and generate the rest: upper, lower or SMPL joint "
                        "names (a diffusion model; e.g. --keep-joints upper generates the legs)")
    p.add_argument("--formats", default="bvh,npz,mp4,html", help="comma-separated outputs (bvh,npz,mp4,html)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_inbetween)

    p = sub.add_parser("render", help="draw a dance (.bvh or .npz) as OpenPose-style pose images, one PNG a frame")
    p.add_argument("motion", help="a dance, .bvh or dancegen .npz, on the SMPL skeleton")
    p.add_argument("--pose-images", required=True, metavar="DIR",
                   help="write DIR/000000.png … (COCO-18 skeletons in OpenPose's colours, as an OpenPose "
                        "ControlNet takes them) and DIR/keypoints.json")
    _camera_options(p)
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the motion's own)")
    p.add_argument("--frames", default=None, metavar="START:STOP", help="only these frames (numbers at --fps)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_render)

    p = sub.add_parser("video", help="a dance as video: its pose images drive Stable Diffusion 1.5 through an OpenPose "
                                     "ControlNet and AnimateDiff (pip install 'dancegen[video]'; local weights, a GPU)")
    p.add_argument("motion", help="a dance, .bvh or dancegen .npz, on the SMPL skeleton")
    p.add_argument("--prompt", required=True, help="what the video shows, e.g. 'a dancer in a red dress on a stage'")
    p.add_argument("--negative-prompt", default=None, help="what it should not show (default: common artefacts)")
    p.add_argument("--base-model", default=None, help="a Stable Diffusion 1.5 model folder in diffusers layout")
    p.add_argument("--controlnet", default=None, help="an OpenPose ControlNet for SD1.5 (diffusers layout)")
    p.add_argument("--motion-adapter", default=None, help="an AnimateDiff motion adapter for SD1.5 (diffusers layout)")
    p.add_argument("-o", "--out", required=True, help="the MP4 to write")
    p.add_argument("--song", default=None, help="the song to mux in (default: none)")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the song where the dance starts")
    p.add_argument("--fps", type=float, default=8.0, help="video frames per second (default 8, AnimateDiff's)")
    p.add_argument("--window", type=int, default=16, help="frames the pipeline makes at once (default 16; 16-32)")
    p.add_argument("--overlap", type=int, default=4, help="frames shared by neighbouring windows, cross-faded (default 4)")
    p.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--control-scale", type=float, default=1.0, help="the ControlNet's weight (default 1)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same video")
    p.add_argument("--device", default=None, help="torch device (default cuda when there is one, else cpu)")
    _camera_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_video)

    p = sub.add_parser("info", help="summarise a dataset folder or a prepared dataset")
    p.add_argument("path")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_info)
    return parser


def _camera_options(p: argparse.ArgumentParser) -> None:
    """The pose images' camera (dancegen.render.pose_images.PoseCamera): a view, its angles, its distance."""
    p.add_argument("--camera", choices=["front", "side", "follow"], default="front",
                   help="front: from the way the dancer faces on average; side: from their left; follow: from the "
                        "way they face at each moment (default front; the camera follows the dancer round the floor)")
    p.add_argument("--azimuth", type=float, default=None,
                   help="degrees round the dancer towards their left from --camera's front (default: the view's)")
    p.add_argument("--elevation", type=float, default=None, help="degrees above the dancer (default 5)")
    p.add_argument("--distance", type=float, default=None, help="metres from the dancer (default 3.2)")
    p.add_argument("--size", default="512x512", help="WIDTHxHEIGHT in pixels (default 512x512)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"dancegen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dancegen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
