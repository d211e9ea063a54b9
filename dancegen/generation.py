"""`dancegen generate`: a song in, a dance out (BVH, npz, MP4, HTML), from any registered model."""

from __future__ import annotations

import inspect
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError
from .paths import DEFAULT_MODEL, DEMO_SONG

if TYPE_CHECKING:  # dancegen.motion loads torch, which the cold command loads while features compute
    from .models import DanceModel
    from .motion import Motion

FORMATS = ("bvh", "npz", "mp4", "html", "glb", "smpl")
MIN_SECONDS = 1.0
# controls of `generate` only some families take (a diffusion model), and what a refusal says
NAMED_CONTROLS = {"key_poses": "place key poses on the beats", "stitch": "choose how its windows are stitched"}


@dataclass
class Generated:
    motion: Motion
    song: Path
    start: float  # seconds into the song where the dance starts
    style: str | None
    song_mp3: Future | None = None  # the danced span as MP3 for the HTML page, encoded while the model dances


def read_seed_motion(path: str | os.PathLike) -> Motion:
    from .motion import Motion, read_bvh

    path = Path(path)
    if path.suffix.lower() == ".bvh":
        return read_bvh(path)
    if path.suffix.lower() == ".npz":
        return Motion.load(path)
    raise UserError(path, "a seed motion must be a .bvh or a dancegen .npz")


def generate_dance(song: str | os.PathLike | None = None, *, model: str | DanceModel = "default", seed: int = 0,
                   style: str = "auto", start: float = 0.0, duration: float | None = None,
                   seed_motion: str | os.PathLike | Motion | None = None, prefetch_mp3: bool = False,
                   **controls) -> Generated:
    """Generate a dance for `song` (the bundled demo song when None) with a model.

    `prefetch_mp3` starts encoding the danced span as MP3 (for `write_outputs`' HTML page) while the
    model dances. `model` is a name, a saved-model folder or a loaded model (a batch loads it once)."""
    from . import audio

    song = Path(song) if song is not None else DEMO_SONG
    length = audio.duration(song)  # UserError for a missing, empty or undecodable file
    if start < 0 or start >= length:
        raise UserError(song, f"--start {start:g} s is outside the song ({length:.1f} s)")
    span = min(duration, length - start) if duration is not None else length - start
    if span < MIN_SECONDS:
        raise UserError(song, f"only {span:.2f} s of music to dance to (at least {MIN_SECONDS:g} s needed)")
    named = isinstance(model, (str, os.PathLike))
    early = _features_while_loading(song, model, start, span) if named and span <= LONG_SONG else None
    from .models import Music, load_model
    from .models.base import one_thread
    from .motion import Motion

    with one_thread():  # copying the weights: a second thread waits for a core (seconds on a busy machine)
        dancer = load_model(model) if named else model
    classifier = _style_classifier() if style == "auto" else None  # loads while the features compute
    frames = int(span * dancer.fps)
    names = list(dancer.music_features)
    try:
        features = early.result() if early is not None else None
    except BrokenProcessPool:  # the forked process died (killed, out of memory): compute here instead
        features = None
    if features is None or list(features) != names or any(len(f) != frames for f in features.values()):
        features = _song_features(song, names, dancer.fps, start, frames)
    if style == "auto":
        style = _recognise_style(classifier, song, start, span, features, dancer.fps)
    mp3 = None
    if prefetch_mp3:
        from .render.html import song_mp3

        mp3 = _in_background(ThreadPoolExecutor(1), song_mp3, song, start, frames / dancer.fps)
    music = Music(features, dancer.fps, song=song, start=start, style=style)
    if seed_motion is not None and not isinstance(seed_motion, Motion):
        seed_motion = read_seed_motion(seed_motion)
    for control, what in NAMED_CONTROLS.items():
        if control in controls and control not in inspect.signature(dancer.generate).parameters:
            raise UserError(model, f"the {dancer.name} model cannot {what} (a diffusion model can)")
    motion = dancer.generate(music, seed_motion=seed_motion, length=frames, seed=seed, style=style, **controls)
    if abs(motion.duration - frames / dancer.fps) > 0.5 / motion.fps:  # the MP3 must span the dance exactly
        mp3 = None
    return Generated(motion, song, start, style, mp3)


LONG_SONG = 10 * 60.0
"""A span longer than this (seconds) has its features computed in FEATURE_PIECE pieces, so that memory
stays flat however long the song (an STFT of the whole hour would take gigabytes)."""
FEATURE_PIECE = 5 * 60.0


def _song_features(song: Path, names: list[str], fps: float, start: float, frames: int) -> dict[str, np.ndarray]:
    """The recipes `names` for `frames` frames from `start`: in one go up to LONG_SONG, else in pieces
    (each with its own context; the cache keeps every piece)."""
    from . import audio

    if frames <= LONG_SONG * fps:
        return audio.features_many(song, names, fps, start=start, num_frames=frames)
    step = int(FEATURE_PIECE * fps)
    pieces = [audio.features_many(song, names, fps, start=start + i / fps, num_frames=min(step, frames - i),
                                  max_duration=math.inf) for i in range(0, frames, step)]
    return {n: np.concatenate([p[n] for p in pieces]) for n in names}


def _features_while_loading(song: Path, model: str, start: float, span: float) -> Future | None:
    """The model's music features, computed in a forked process while this one loads torch and the
    model (the cold command spends seconds in each). Only when torch is not loaded yet, so that the
    fork is safe, and only for a saved model whose config.json names its features; else None."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return None
    folder = DEFAULT_MODEL if model == "default" else Path(model)
    try:
        config = json.loads((folder / "config.json").read_text())
        fps, names = float(config["fps"]), [str(n) for n in config["music_features"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from .audio import features_many

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    return _in_background(pool, features_many, song, names, fps, start=start, num_frames=int(span * fps))


def _in_background(pool, fn, *args, **kwargs) -> Future:
    """`fn(*args, **kwargs)` run by a one-off pool, which closes itself once it is done."""
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def _style_classifier():
    """The bundled music style classifier, or None when it is not bundled."""
    from .metrics.style import ASSETS, MusicStyleClassifier

    if not (ASSETS / "dance_with_melody_music").is_dir():
        return None
    return MusicStyleClassifier.bundled("dance_with_melody")


def _recognise_style(classifier, song: Path, start: float, span: float,
                     features: dict[str, np.ndarray], fps: float) -> str | None:
    """The song's style by the music style `classifier` (None: no style); it reuses the model's
    `features` (at `fps`) when they are the classifier's."""
    if classifier is None:
        return None
    given = features.get(classifier.config["feature"])
    if given is None or fps != classifier.fps:
        given = classifier.song_features(song, start=start, duration=span)
    return classifier.predict(given)


def write_outputs(result: Generated, out: str | os.PathLike, formats: tuple[str, ...] = FORMATS,
                  progress: bool = True) -> list[Path]:
    """Write NAME.bvh/.npz/.mp4/.html/.glb/.smpl.pkl into `out`, each atomically; returns the paths written."""
    from .io import atomic_path
    from .models.base import one_thread
    from .motion import write_bvh

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(None, f"unknown output format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / result.song.stem
    m = result.motion
    written = []
    with one_thread():  # torch's element-wise work (kinematics, Euler angles): a second thread mostly waits
        for fmt in formats:
            path = base.with_suffix(".smpl.pkl" if fmt == "smpl" else f".{fmt}")
            if fmt == "bvh":
                write_bvh(m, path)
            elif fmt == "glb":
                from .motion.gltf import write_glb

                write_glb(m, path)
            elif fmt == "smpl":
                from .motion.smpl_export import write_smpl

                write_smpl(m, path)
            elif fmt == "npz":
                with atomic_path(path, suffix=".npz") as tmp:
                    np.savez(tmp, positions=m.positions(), root_translation=m.root_translation, rotations=m.rotations,
                             fps=np.float64(m.fps), joint_names=np.array(m.skeleton.names),
                             parents=np.array(m.skeleton.parents), offsets=m.skeleton.offsets,
                             music_offset=np.float64(result.start))
            elif fmt == "mp4":
                from .render import render_video

                render_video(m, path, song=result.song, song_offset=result.start, progress=progress)
            else:
                from .render import write_html

                mp3 = result.song_mp3.result() if result.song_mp3 is not None else None
                write_html(m, path, song=result.song, song_offset=result.start, mp3=mp3)
            written.append(path)
    return written


# Batch generation: many songs, a pool of worker processes that each load the model once.

SONG_SUFFIXES = (".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".aif", ".aiff", ".wma")


def song_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Songs named directly, and the audio files (by suffix, sorted) in folders, recursively. UserError
    for a path that does not exist, a folder without songs, or two songs whose outputs would collide."""
    songs: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SONG_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise UserError(path, f"no songs in this folder (looked for {', '.join(SONG_SUFFIXES)})")
            songs += found
        elif path.exists():
            songs.append(path)
        else:
            raise UserError(path, "no such file or folder")
    stems: dict[str, Path] = {}
    for song in dict.fromkeys(songs):
        if song.stem in stems:
            raise UserError(song, f"its outputs would overwrite those of {stems[song.stem]} (same name); "
                                  f"rename one or generate them into different folders")
        stems[song.stem] = song
    return list(stems.values())


def outputs_exist(song: Path, out: Path, formats: tuple[str, ...]) -> bool:
    """Whether every format's output of `song` is in `out`: NAME.FORMAT, or NAME.FORMAT.EXT for a
    format with a double suffix. Outputs are renamed into place once complete, so one there is whole."""
    if not out.is_dir():
        return False
    names = {p.name for p in out.iterdir()}
    return all(f"{song.stem}.{f}" in names or any(n.startswith(f"{song.stem}.{f}.") for n in names) for f in formats)


@dataclass
class SongResult:
    song: Path
    status: str  # "done", "skipped" or "failed"
    message: str  # the progress line's text after the song's name
    written: list[Path]


_WORKER: dict = {}


def _start_worker(model: str, device: str, threads: int | None) -> None:
    """A pool worker: torch on `threads` threads (the pool shares the cores), the model loaded once.
    Ctrl-C is the command's to handle: a worker ignores SIGINT and is terminated by it."""
    import signal

    import torch

    from .models import load_model

    if threads:  # a pool worker, not the command itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(threads)
    if device != "cpu":
        torch.set_default_device(device)
    _WORKER["model"] = load_model(model)


def _one_song(song: Path, out: Path, formats: tuple[str, ...], options: dict) -> SongResult:
    """Generate and write one song of a batch; a failure is returned, not raised, so the batch goes on
    (a UserError as its line, any other exception as its type, message and last frame)."""
    import time
    import traceback

    started = time.time()
    try:
        result = generate_dance(song, model=_WORKER["model"], prefetch_mp3="html" in formats, **options)
        written = write_outputs(result, out, formats, progress=False)
    except UserError as e:
        return SongResult(song, "failed", f"error: {e.problem if e.path == str(song) else e}", [])
    except Exception as e:  # noqa: BLE001 - a bug on one song must not stop the others; its trace goes along
        where = traceback.extract_tb(e.__traceback__)[-1]
        return SongResult(song, "failed", f"error: {type(e).__name__}: {e} ({where.filename}:{where.lineno})", [])
    return SongResult(song, "done", f"{result.motion.duration:.1f} s of dance from {result.start:g} s"
                      f"{f', style {result.style}' if result.style else ''}, seed {options.get('seed', 0)}, in "
                      f"{time.time() - started:.1f} s: " + ", ".join(str(p) for p in written), written)


def generate_many(songs: list[str | os.PathLike], out: str | os.PathLike, *, model: str = "default",
                  formats: tuple[str, ...] = FORMATS, jobs: int | None = None, overwrite: bool = False,
                  device: str = "cpu", report=print, **options) -> list[SongResult]:
    """Dance to every song (files, or folders of them) into `out` with a pool of `jobs` worker
    processes (default: one per core, at most one per song), each loading the model once.

    Songs whose outputs in every format are already in `out` are skipped unless `overwrite`, so a
    rerun of a stopped batch resumes. `report(line)` gets a progress line per song ("[3/12] NAME: ...").
    A song that fails is reported and the others go on; the results say which (status "failed").
    `options` as for `generate_dance` (seed, style, start, duration, seed_motion, temperature ...)."""
    from concurrent.futures import as_completed

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(None, f"unknown output format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if model != "default" and not (Path(model) / "config.json").is_file():
        from .models import check_model  # loads torch: the workers will be spawned, not forked

        check_model(model)
    paths, out = song_files(songs), Path(out)
    results: dict[Path, SongResult] = {}
    todo = []
    for song in paths:
        if not overwrite and outputs_exist(song, out, formats):
            results[song] = SongResult(song, "skipped", f"skipped: its {', '.join(formats)} are in {out}", [])
        else:
            todo.append(song)
    count = 0

    def done(result: SongResult) -> None:
        nonlocal count
        count += 1
        results[result.song] = result
        report(f"[{count}/{len(paths)}] {result.song.name}: {result.message}")

    for song in paths:
        if song in results:
            done(results[song])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = max(1, min(jobs or cores, len(todo) or 1))
    options = {**options, "progress": False}
    if jobs == 1:
        try:
            for song in todo:
                if "model" not in _WORKER:
                    _start_worker(model, device, None)
                done(_one_song(song, out, formats, dict(options)))
        finally:
            _WORKER.clear()
    else:
        _warm_up(model)
        # forked after the warm-up, the workers start with librosa's kernels compiled; forking is safe
        # only while torch is not loaded here (the command's case), else fresh processes
        fork = "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if fork else "spawn")
        for _ in range(2):  # a worker that dies (killed, out of memory) breaks the pool: one more try
            pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                       initargs=(model, device, max(1, cores // jobs)))
            try:
                futures = {pool.submit(_one_song, song, out, formats, dict(options)): song for song in todo}
                broken = []
                for future in as_completed(futures):
                    try:
                        done(future.result())
                    except BrokenProcessPool:
                        broken.append(futures[future])
            except BaseException:  # Ctrl-C: shutting down would let the workers finish the whole queue
                workers = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for process in workers:
                    process.terminate()
                raise
            pool.shutdown()
            todo = sorted(broken, key=paths.index)
            if not todo:
                break
        for song in todo:
            done(SongResult(song, "failed", "error: its worker process died (killed, or out of memory?)", []))
    return [results[s] for s in paths]


def _warm_up(model: str) -> None:
    """librosa's numba kernels compiled here once, so that the workers do not compile them side by side."""
    from .audio.cache import warm_up

    folder = DEFAULT_MODEL if model == "default" else Path(model)
    try:
        config = json.loads((folder / "config.json").read_text())
        recipes, fps = [str(r) for r in config["music_features"]], float(config["fps"])
    except (OSError, ValueError, KeyError, TypeError):  # a registered model's name: the usual recipes
        recipes, fps = ["fact35", "bailando438"], 25.0
    warm_up(recipes, fps)
