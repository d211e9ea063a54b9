"""The web app (Starlette): one static page and a small JSON API.

    GET  /                              the page (static/index.html)
    GET  /api/info                      models (by name) and their styles, output formats, limits
    POST /api/songs                     upload a song (multipart field "file") -> {id, name, seconds}
    POST /api/jobs                      {song: ID or "demo", model, style, seed, duration} -> a job
    GET  /api/jobs/{id}                 a job's state, progress and outputs
    GET  /api/jobs/{id}/files/{format}  an output (attachment); /view: the 3D viewer page (inline)

Every error is JSON, {"error": "..."}, with a 4xx status for what the client sent. Files are found
by job id and a format from a fixed list, never by a path from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..paths import DEFAULT_MODEL, DEMO_SONG
from .jobs import Jobs, QueueFull, known_styles
from .songs import Songs, UploadRejected

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
MEDIA_TYPES = {"bvh": "text/plain; charset=utf-8", "npz": "application/octet-stream", "mp4": "video/mp4",
               "glb": "model/gltf-binary", "html": "text/html; charset=utf-8"}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SEED = 2**31 - 1


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def find_models(models_dir: str | Path | None) -> dict[str, Path]:
    """The bundled default model, and every folder in `models_dir` that holds a saved model's config.json,
    by folder name. The page names a model; the server alone knows its path."""
    found = {"default": DEFAULT_MODEL}
    if models_dir is not None:
        for folder in sorted(Path(models_dir).iterdir()):
            if folder.name != "default" and MODEL_NAME.match(folder.name) and (folder / "config.json").is_file():
                found[folder.name] = folder
    return found


def uses_style(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "config.json").read_text()).get("use_style", True))
    except (OSError, ValueError, AttributeError):
        return False


def download_name(song_name: str, fmt: str) -> str:
    """NAME.FORMAT for a download, NAME the song's name in safe ASCII (it only goes into a header)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(song_name).stem).strip("._")[:60] or "dance"
    return f"{stem}.{fmt}"


class TooBig(Exception):
    pass


def limited(receive, limit: int):
    """An ASGI `receive` that raises TooBig once the request body passes `limit` bytes."""
    total = 0

    async def receive_limited():
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise TooBig
        return message

    return receive_limited


def create_app(*, models_dir: str | Path | None = None, data_dir: str | Path | None = None, workers: int = 2,
               max_upload_mb: float = 100, max_minutes: float = 10, jobs: Jobs | None = None,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The app. Its files live in `data_dir` (default: a temporary folder removed at shutdown); `jobs`
    replaces the process pool (tests hand in a thread pool with a quick runner). `allowed_hosts`: the
    Host headers answered (None: any); a server on 127.0.0.1 takes only its own names, so that a web
    page elsewhere cannot reach it by DNS rebinding."""
    models = find_models(models_dir)
    own_data = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="dancegen-serve-") if own_data else data_dir).resolve()
    max_bytes = int(max_upload_mb * 2**20)
    songs = Songs(data / "songs", max_bytes=max_bytes, max_seconds=max_minutes * 60)
    state: dict = {"jobs": jobs, "styles": None}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if state["jobs"] is None:
            state["jobs"] = Jobs.with_process_pool(data, workers)
        state["styles"] = _in_thread(known_styles)  # imports torch: not in the way of the first requests
        try:
            yield
        finally:
            state["jobs"].shutdown()
            if own_data:
                shutil.rmtree(data, ignore_errors=True)

    async def page(request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def styles_of(model: str) -> list[str]:
        """auto, and the styles the model's family conditions on when the model uses them."""
        styles = []
        if state["styles"] is not None and uses_style(models[model]):
            with contextlib.suppress(Exception):
                styles = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(state["styles"])), timeout=60)
        return ["auto", *styles]

    async def info(request: Request) -> Response:
        return JSONResponse({
            "models": [{"name": name, "styles": await styles_of(name)} for name in models],
            "formats": list(state["jobs"].formats),
            "max_upload_mb": max_upload_mb, "max_minutes": max_minutes,
            "demo": {"id": "demo", "name": DEMO_SONG.name},
        })

    async def upload(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes + 64 * 1024:
            return error(413, f"the file is over the {max_upload_mb:g} MB limit")
        song_id, path = songs.new_slot()
        try:
            body = Request(request.scope, limited(request.receive, max_bytes + 64 * 1024))
            async with body.form(max_files=1, max_fields=4, max_part_size=64 * 1024) as form:
                file = form.get("file")
                if file is None or isinstance(file, str):
                    raise UploadRejected(400, 'no file in the upload: send the song as a multipart form field named '
                                              '"file", with a file name')
                with open(path, "wb") as out:
                    await run_in_threadpool(shutil.copyfileobj, file.file, out)
                filename = file.filename
            song = await run_in_threadpool(songs.check_and_add, song_id, path, filename)
        except BaseException as e:
            shutil.rmtree(path.parent, ignore_errors=True)
            if isinstance(e, UploadRejected):
                return error(e.status, e.message)
            if isinstance(e, TooBig):
                return error(413, f"the file is over the {max_upload_mb:g} MB limit")
            if isinstance(e, HTTPException) and 400 <= e.status_code < 500:  # the multipart form is malformed
                return error(e.status_code, f'not a valid upload ({e.detail}): send the song as a multipart form '
                                            f'field named "file", with a file name')
            if isinstance(e, ClientDisconnect):
                return error(400, "the upload was cut off")
            raise
        return JSONResponse({"id": song.id, "name": song.name, "seconds": song.seconds, "kind": song.kind},
                            status_code=201)

    async def submit(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send the job as JSON (Content-Type: application/json)")  # no cross-site form posts
        try:
            body = await request.json()
        except (ValueError, ClientDisconnect):
            return error(400, "the request body must be JSON")
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        song_key, model = body.get("song", "demo"), body.get("model", "default")
        style, seed, duration = body.get("style", "auto"), body.get("seed", 0), body.get("duration")
        if song_key == "demo":
            song_path, song_name = DEMO_SONG, DEMO_SONG.name
        else:
            song = songs.get(song_key) if isinstance(song_key, str) else None
            if song is None:
                return error(404, "no such song (upload it again)")
            song_path, song_name = song.path, song.name
        if not isinstance(model, str) or model not in models:
            return error(400, f"no such model; choose from {', '.join(models)}")
        if not isinstance(style, str) or style not in await styles_of(model):
            return error(400, f"style must be one of {', '.join(await styles_of(model))}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            return error(400, f"seed must be a whole number from 0 to {MAX_SEED}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not math.isfinite(duration) or not 1 <= duration <= max_minutes * 60):
            return error(400, f"duration must be a number of seconds from 1 to {max_minutes * 60:g}, or null")
        options = {"seed": seed, "style": style, "duration": duration}
        try:
            job = state["jobs"].submit(song_path, song_name, model, models[model], options)
        except QueueFull as e:
            return error(503, str(e))
        return JSONResponse(state["jobs"].status(job), status_code=202)

    def find_job(request: Request):
        return state["jobs"].get(request.path_params["job_id"])

    async def job_status(request: Request) -> Response:
        job = find_job(request)
        if job is None:
            return error(404, "no such job (the server may have restarted)")
        return JSONResponse(state["jobs"].status(job), headers={"Cache-Control": "no-store"})

    async def job_file(request: Request) -> Response:
        job, fmt = find_job(request), request.path_params["fmt"]
        path = state["jobs"].output(job, fmt) if job is not None else None
        if path is None:
            return error(404, "no such file")
        return FileResponse(path, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
                            filename=download_name(job.song_name, fmt), headers={"X-Content-Type-Options": "nosniff"})

    async def job_view(request: Request) -> Response:
        job = find_job(request)
        path = state["jobs"].output(job, "html") if job is not None else None
        if path is None:
            return error(404, "no viewer for this job (yet)")
        return FileResponse(path, media_type="text/html; charset=utf-8", filename=download_name(job.song_name, "html"),
                            content_disposition_type="inline", headers={"X-Content-Type-Options": "nosniff"})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return error(status, getattr(exc, "detail", None) or "not found")

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, "internal server error (see the server's log)")

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/songs", upload, methods=["POST"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_status),
        Route("/api/jobs/{job_id}/files/{fmt}", job_file),
        Route("/api/jobs/{job_id}/view", job_view),
    ]
    middleware = [] if allowed_hosts is None else [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.data_dir = data
    app.state.songs = songs
    app.state.models = models
    app.state.app_state = state
    return app


def _in_thread(fn) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future
