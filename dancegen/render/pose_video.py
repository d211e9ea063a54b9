"""Pose to video: a dance's OpenPose images drive Stable Diffusion 1.5 through an OpenPose ControlNet,
with AnimateDiff's motion adapter holding the frames together (diffusers' AnimateDiffControlNetPipeline).

The motion is resampled to the video's frame rate and drawn as pose images (`pose_images`: the
ControlNet's condition, one per frame). The pipeline makes `window` frames at a time, windows
overlapping by `overlap` frames (the last window is moved back to end on the last frame, so it may
overlap more). Stitching: every frame's starting noise is fixed by (seed, frame number), so two
windows start the frames they share from the same latents; what each window makes of those frames
still differs (the rest of its window differs), so the shared frames are cross-faded in pixels,
linearly from the earlier window to the later one. Frames go to the MP4 writer as soon as no later
window can change them, so memory stays flat for a whole song. The song's span is muxed in.

An optional extra (`pip install dancegen[video]`: diffusers and transformers). It needs local
weights, in diffusers layout (WEIGHTS), and in practice a GPU: on a CPU a real SD1.5 model takes
minutes a frame. Nothing is downloaded: every load is local_files_only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError
from ..motion import Motion
from .pose_images import draw_pose, pose_frames
from .video import check_song, write_mp4

# What each option needs, for the messages when it is missing or wrong.
WEIGHTS = {
    "base_model": ("--base-model", "a Stable Diffusion 1.5 model in diffusers layout (model_index.json, unet/, vae/, "
                                   "text_encoder/, tokenizer/, scheduler/; e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)"),
    "controlnet": ("--controlnet", "an OpenPose ControlNet for SD1.5 in diffusers layout (config.json and weights; "
                                   "e.g. lllyasviel/sd-controlnet-openpose or lllyasviel/control_v11p_sd15_openpose)"),
    "motion_adapter": ("--motion-adapter", "an AnimateDiff motion adapter for SD1.5 in diffusers layout (config.json "
                                           "and weights; e.g. guoyww/animatediff-motion-adapter-v1-5-2)"),
}
BASE_PARTS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "tokenizer": None,
              "scheduler": "scheduler_config.json"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")
NEGATIVE_PROMPT = "bad quality, worst quality, blurry, deformed, extra limbs, text, watermark"


def _diffusers():
    """The diffusers module, or a UserError saying how to install the extra."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(None, f"dancegen video needs the video extra ({e.name} is not installed): "
                              f"pip install 'dancegen[video]'") from None
    return diffusers


def check_weights(base_model, controlnet, motion_adapter) -> None:
    """UserError naming every option whose weights are missing or not in the layout needed, and what it needs."""
    problems = []
    for key, path in (("base_model", base_model), ("controlnet", controlnet), ("motion_adapter", motion_adapter)):
        option, needed = WEIGHTS[key]
        problem = _layout_problem(key, None if path is None else Path(path))
        if problem:
            problems.append(f"{option} {path or ''}{': ' if path else ''}{problem}; it needs {needed}")
    if problems:
        raise UserError(None, "missing weights: " + "; ".join(problems))


def _layout_problem(key: str, path: Path | None) -> str | None:
    if path is None:
        return "not given"
    if not path.is_dir():
        return "no such folder"
    if key == "base_model":
        missing = [part for part, config in BASE_PARTS.items()
                   if not (path / part).is_dir() or (config and not (path / part / config).is_file())]
        missing += [] if (path / "model_index.json").is_file() else ["model_index.json"]
        if missing:
            return f"no {', '.join(missing)}"
        if not any((path / part / f).is_file() for part in ("unet", "vae") for f in WEIGHT_FILES):
            return "no weights in unet/ or vae/"
        return None
    expected = {"controlnet": "ControlNetModel", "motion_adapter": "MotionAdapter"}[key]
    try:
        kind = json.loads((path / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        return "no readable config.json"
    if kind != expected:
        return f"its config.json is a {kind}, not a {expected}"
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        return "no weights file (diffusion_pytorch_model.safetensors)"
    return None


def load_pipeline(base_model, controlnet, motion_adapter, *, device: str, dtype=None):
    """diffusers' AnimateDiffControlNetPipeline from three local folders, on `device` (float16 on CUDA),
    with AnimateDiff's recommended DDIM schedule (linear betas, no sample clipping)."""
    import torch

    diffusers = _diffusers()
    check_weights(base_model, controlnet, motion_adapter)
    dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
    parts = {}
    for key, path, cls in (("motion_adapter", motion_adapter, diffusers.MotionAdapter),
                           ("controlnet", controlnet, diffusers.ControlNetModel)):
        try:
            parts[key] = cls.from_pretrained(path, dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(path, f"could not load {WEIGHTS[key][0]} ({_first_line(e)}); it needs {WEIGHTS[key][1]}") from None
    try:
        pipe = diffusers.AnimateDiffControlNetPipeline.from_pretrained(
            base_model, **parts, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise UserError(base_model, f"could not load --base-model ({_first_line(e)}); it needs {WEIGHTS['base_model'][1]}") from None
    pipe.scheduler = diffusers.DDIMScheduler.from_config(
        pipe.scheduler.config, beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """First frames of windows of `window` frames overlapping by at least `overlap`, covering all frames."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, window - overlap))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def stitch(windows: Iterable[tuple[int, np.ndarray]]) -> Iterator[np.ndarray]:
    """Frames, in order, of overlapping windows (start frame, (n, H, W, 3) float 0..255) given in order of
    start: where two windows share frames, a linear cross-fade from the earlier to the later. uint8."""
    start, pending = 0, None
    for next_start, frames in windows:
        frames = np.asarray(frames, dtype=np.float32)
        if pending is not None:
            shared = start + len(pending) - next_start
            if not 0 <= shared <= len(frames):
                raise ValueError(f"window at {next_start} does not continue the one at {start}")
            yield from _to_uint8(pending[: len(pending) - shared])
            fade = (np.arange(1, shared + 1, dtype=np.float32) / (shared + 1))[:, None, None, None]
            frames = np.concatenate([(1 - fade) * pending[len(pending) - shared:] + fade * frames[:shared],
                                     frames[shared:]])
        start, pending = next_start, frames
    if pending is not None:
        yield from _to_uint8(pending)


def _to_uint8(frames: np.ndarray) -> Iterator[np.ndarray]:
    for frame in frames:
        yield np.clip(np.round(frame), 0, 255).astype(np.uint8)


def frame_noise(seed: int, frames: range, shape: tuple[int, int, int]) -> np.ndarray:
    """Starting latents (C, F, h, w) for `frames`, each frame's drawn from (seed, frame number) alone."""
    return np.stack([np.random.default_rng([seed, f]).standard_normal(shape, dtype=np.float32) for f in frames], axis=1)


def render_pose_video(motion: Motion, out: str | os.PathLike, *, prompt: str, base_model, controlnet, motion_adapter,
                      negative_prompt: str | None = None, song: str | os.PathLike | None = None,
                      song_offset: float = 0.0, fps: float = 8.0, size: tuple[int, int] = (512, 512), window: int = 16,
                      overlap: int = 4, steps: int = 25, guidance: float = 7.5, control_scale: float = 1.0, seed: int = 0,
                      device: str | None = None, camera: dict | None = None, progress: bool = True) -> tuple[Path, int]:
    """Write `out` (MP4): `motion` as video from its pose images at `fps`, with the song's span if given.
    `camera`: keyword arguments of the pose images' camera (view, azimuth, elevation, distance).
    Returns the path and the number of frames."""
    import torch

    w, h = size
    if w % 8 or h % 8 or w < 8 or h < 8:
        raise UserError(None, f"--size must be multiples of 8 pixels (Stable Diffusion's), got {w}x{h}")
    if window < 2 or not 0 <= overlap < window:
        raise UserError(None, f"--window must be at least 2 and --overlap from 0 to window - 1, got {window} and {overlap}")
    if steps < 1:
        raise UserError(None, f"--steps must be at least 1, got {steps}")
    if song_offset < 0:
        raise UserError(None, f"--start must be 0 s or more, got {song_offset:g}")
    _diffusers()  # the install hint before anything slow
    check_weights(base_model, controlnet, motion_adapter)
    longest = json.loads((Path(motion_adapter) / "config.json").read_text()).get("motion_max_seq_length", 32)
    if window > longest:
        raise UserError(motion_adapter, f"this motion adapter takes at most {longest} frames at once; --window {window} is more")
    if song is not None:
        check_song(song, song_offset)
    uv, visible, rate = pose_frames(motion, size=size, fps=fps, **(camera or {}))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(base_model, controlnet, motion_adapter, device=device)
    latent_shape = (pipe.unet.config.in_channels, h // pipe.vae_scale_factor, w // pipe.vae_scale_factor)
    negative = NEGATIVE_PROMPT if negative_prompt is None else negative_prompt

    def windows() -> Iterator[tuple[int, np.ndarray]]:
        for start in window_starts(len(uv), window, overlap):
            frames = range(start, min(start + window, len(uv)))
            latents = torch.from_numpy(frame_noise(seed, frames, latent_shape))[None]
            with torch.inference_mode():
                result = pipe(prompt=prompt, negative_prompt=negative, num_frames=len(frames), height=h, width=w,
                              num_inference_steps=steps, guidance_scale=guidance,
                              conditioning_frames=[draw_pose(uv[i], visible[i], size) for i in frames],
                              controlnet_conditioning_scale=control_scale,
                              latents=latents.to(device=pipe.device, dtype=pipe.unet.dtype), output_type="np")
            yield start, np.asarray(result.frames[0], dtype=np.float32) * 255

    path = write_mp4(out, stitch(windows()), len(uv), fps=rate, size=size, pix_fmt="rgb24", song=song,
                     song_offset=song_offset, song_duration=motion.duration, progress=progress)
    return path, len(uv)
