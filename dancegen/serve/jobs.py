"""The web app's jobs: a bounded pool of worker processes that each load a model once, and a queue.

A job is a folder under the app's data folder, named by a server-made id. The worker writes its
progress there (progress.json, atomically: stage, fraction, the outputs written so far); the app
reads it when a page polls. The job's record (state, error, options) lives in the app's memory, so
a browser reload finds a running job again by its id; a server restart starts afresh.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import secrets
import shutil
import threading
import time
import traceback
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError

log = logging.getLogger("dancegen.serve")

# What a job writes, in this order (the MP4 is slowest, so the viewer and the small files come first).
# GLB joins once dancegen.generation writes it.
WANTED_FORMATS = ("bvh", "npz", "glb", "html", "mp4")
# The share of a job's time each step takes, roughly (for the progress bar).
STEP_WEIGHTS = {"dance": 0.55, "bvh": 0.02, "npz": 0.02, "glb": 0.03, "html": 0.08, "mp4": 0.30}


def output_formats() -> tuple[str, ...]:
    """The formats the app offers: those of WANTED_FORMATS that dancegen.generation writes."""
    from ..generation import FORMATS

    return tuple(f for f in WANTED_FORMATS if f in FORMATS)


def new_id() -> str:
    return secrets.token_hex(8)


def is_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


# ---- the worker process side

_MODELS: dict[str, object] = {}


def start_worker(threads: int, lock: str) -> None:
    """A pool worker's initializer: torch on `threads` threads, its modules imported and librosa's numba
    kernels loaded before the first job. The kernels load one worker at a time (a file lock): two
    processes compiling the same kernel at once can break numba's cache (dancegen.audio.cache.warm_up)."""
    import fcntl

    import torch

    from .. import models  # noqa: F401  (registers the families)
    from ..audio import cache

    torch.set_num_threads(max(1, threads))
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        cache.warm_up()


def _model(folder: str):
    """The saved model in `folder`, loaded once per worker process."""
    if folder not in _MODELS:
        from ..models import load_model

        _MODELS[folder] = load_model(folder)
    return _MODELS[folder]


def _write_progress(job_dir: Path, **state) -> None:
    from ..io import write_text

    write_text(job_dir / "progress.json", json.dumps(state))


def run_job(job_dir: str, song: str, model: str, options: dict, formats: tuple[str, ...], title: str) -> dict:
    """Generate one dance in a worker process and write its outputs into `job_dir`, reporting progress
    there; the viewer page is titled `title`. Returns {"style", "seconds", "files": {format: file name}};
    UserError for a bad song."""
    from ..generation import generate_dance, write_outputs
    from ..render import write_html

    job_dir, started = Path(job_dir), time.time()
    done, files = 0.0, {}

    def step(stage: str) -> None:
        _write_progress(job_dir, stage=stage, fraction=round(done, 3), files=files, started=started)

    step("loading the model")
    dancer = _model(model)
    step("listening and dancing")
    result = generate_dance(song, model=dancer, prefetch_mp3="html" in formats, progress=False, **options)
    done += STEP_WEIGHTS["dance"]
    out = job_dir / "out"
    for fmt in formats:
        step(f"writing the {fmt.upper()}")
        if fmt == "html":  # as write_outputs does, with the song's name for a title (the file is just "song")
            path = write_html(result.motion, out / f"{result.song.stem}.html", song=result.song, song_offset=result.start,
                              title=title, mp3=result.song_mp3.result() if result.song_mp3 is not None else None)
        else:
            [path] = write_outputs(result, out, (fmt,), progress=False)
        files[fmt] = path.name
        done += STEP_WEIGHTS.get(fmt, 0.05)
    step("done")
    return {"style": result.style, "seconds": round(result.motion.duration, 2), "files": files}


def known_styles() -> list[str]:
    """The styles the model families condition on (asked of a worker: it has torch loaded already)."""
    from ..models.base import STYLES

    return list(STYLES)


# ---- the app side


@dataclass
class Job:
    id: str
    song_name: str
    model: str
    options: dict
    dir: Path
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued, running, done, failed
    error: str | None = None
    result: dict | None = None
    future: Future | None = field(default=None, repr=False)


class Jobs:
    """Jobs by id, run by `executor` (a process pool by default) with `runner`. At most `max_pending`
    jobs wait or run at once; the oldest finished jobs (and their folders) go beyond `keep`."""

    def __init__(self, root: Path, executor: Executor, *, runner: Callable = run_job,
                 formats: tuple[str, ...] | None = None, max_pending: int = 16, keep: int = 100,
                 new_executor: Callable[[], Executor] | None = None):
        self.root, self.executor, self.runner, self.new_executor = root, executor, runner, new_executor
        self.formats = formats if formats is not None else output_formats()
        self.max_pending, self.keep = max_pending, keep
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    @classmethod
    def with_process_pool(cls, root: Path, workers: int, **kwargs) -> Jobs:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

        def new_pool() -> ProcessPoolExecutor:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                                       initargs=(max(1, cores // workers), str(root / "warm_up.lock")))
            pool.submit(int)  # starts a worker now: it loads torch and librosa's kernels before the first job comes
            return pool

        return cls(root, new_pool(), new_executor=new_pool, **kwargs)

    def submit(self, song: Path, song_name: str, model: str, model_folder: Path, options: dict) -> Job:
        """Queue a dance of `song` by the model `model` (its name; saved in `model_folder`)."""
        with self.lock:
            pending = sum(j.state in ("queued", "running") for j in self.jobs.values())
            if pending >= self.max_pending:
                raise QueueFull(f"{pending} dances are waiting or being made; try again in a minute")
            job = Job(new_id(), song_name, model, options, self.root / "jobs")
            job.dir = job.dir / job.id
            job.dir.mkdir(parents=True)
            self.jobs[job.id] = job
            self._forget_old()
        args = (self.runner, str(job.dir), str(song), str(model_folder), options, self.formats, Path(song_name).stem)
        try:
            try:
                job.future = self.executor.submit(*args)
            except BrokenProcessPool:  # a worker died (killed, out of memory): a new pool for the jobs to come
                if self.new_executor is None:
                    raise
                self.executor = self.new_executor()
                job.future = self.executor.submit(*args)
        except (RuntimeError, BrokenProcessPool) as e:  # shut down, or broken again
            self._finish(job, error=f"the server cannot run jobs now ({e})")
            return job
        job.future.add_done_callback(lambda f: self._finished(job, f))
        return job

    def _finished(self, job: Job, future: Future) -> None:
        try:
            result = future.result()
        except UserError as e:
            self._finish(job, error=e.problem)
        except BrokenProcessPool:
            self._finish(job, error="its worker process died (out of memory?)")
        except Exception as e:  # noqa: BLE001 - a bug in one job must not stop the server; it is logged
            log.error("job %s failed:\n%s", job.id, "".join(traceback.format_exception(e)))
            self._finish(job, error=f"internal error ({type(e).__name__}: {e})")
        else:
            self._finish(job, result=result)

    def _finish(self, job: Job, *, result: dict | None = None, error: str | None = None) -> None:
        with self.lock:
            job.result, job.error = result, error
            job.state = "done" if error is None else "failed"

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed")]
        for job in sorted(finished, key=lambda j: j.created)[: max(0, len(self.jobs) - self.keep)]:
            del self.jobs[job.id]
            shutil.rmtree(job.dir, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if is_id(job_id) else None

    def progress(self, job: Job) -> dict:
        """What the worker last reported: stage, fraction, files written so far (empty while queued)."""
        try:
            return json.loads((job.dir / "progress.json").read_text())
        except (OSError, ValueError):
            return {}

    def status(self, job: Job) -> dict:
        progress = self.progress(job)
        state = job.state
        if state == "queued" and progress:
            state = "running"
        files = (job.result or {}).get("files") or progress.get("files") or {}
        status = {"id": job.id, "state": state, "song": job.song_name, "model": job.model, **job.options,
                  "stage": progress.get("stage", "waiting for a free worker"),
                  "fraction": 1.0 if state == "done" else progress.get("fraction", 0.0),
                  "elapsed": round(time.time() - job.created, 1),
                  "files": {fmt: f"/api/jobs/{job.id}/files/{fmt}" for fmt in self.formats if fmt in files}}
        if state == "queued":
            with self.lock:
                status["ahead"] = sum(j.state == "queued" and j.created < job.created and not self.progress(j)
                                      for j in self.jobs.values())
        if job.result:
            status["style"], status["seconds"] = job.result.get("style"), job.result.get("seconds")
        if job.error:
            status["stage"], status["error"] = "failed", job.error
        return status

    def output(self, job: Job, fmt: str) -> Path | None:
        """The file of format `fmt` that the job wrote, or None. The name comes from the worker's report,
        never from the request; it must be a plain name in the job's output folder."""
        if fmt not in self.formats:
            return None
        files = (job.result or {}).get("files") or self.progress(job).get("files") or {}
        name = files.get(fmt)
        if not isinstance(name, str) or name != Path(name).name or name.startswith("."):
            return None
        path = job.dir / "out" / name
        return path if path.is_file() else None

    def shutdown(self) -> None:
        """Cancel the waiting jobs and stop the running ones (their workers are terminated)."""
        workers = list((getattr(self.executor, "_processes", None) or {}).values())  # shutdown forgets them
        for process in workers:  # Python 3.14 has ProcessPoolExecutor.terminate_workers() for this
            process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)  # quick: the workers are gone


class QueueFull(Exception):
    pass
