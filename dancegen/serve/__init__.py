"""`dancegen serve`: a local web app to dance to a song, watch it in 3D and download it.

    app.py      the Starlette app: the page and the JSON API
    jobs.py     the worker pool (processes that each load a model once), the queue, progress
    songs.py    uploads: size, content sniffing and duration checks; stored under server-made ids
    static/     the page (one HTML file; it shows the generated NAME.html viewer in an iframe)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def serve(host: str = "127.0.0.1", port: int = 8000, *, workers: int = 2, models_dir: str | None = None,
          data_dir: str | None = None, max_upload_mb: float = 100, max_minutes: float = 10) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    from .app import create_app

    if workers < 1:
        raise UserError(None, f"--workers must be at least 1, got {workers}")
    if max_upload_mb <= 0 or max_minutes <= 0:
        raise UserError(None, "--max-upload-mb and --max-minutes must be positive")
    if models_dir is not None and not Path(models_dir).is_dir():
        raise UserError(models_dir, "no such folder of saved models")
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    _check_port(host, port)
    loopback = host in ("127.0.0.1", "localhost", "::1")
    app = create_app(models_dir=models_dir, data_dir=data_dir, workers=workers, max_upload_mb=max_upload_mb,
                     max_minutes=max_minutes, allowed_hosts=["127.0.0.1", "localhost", "[::1]"] if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    print(f"dancegen serve: open http://{shown}:{port}/ ({workers} worker{'s' * (workers != 1)}, "
          f"models: {', '.join(app.state.models)}); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def _check_port(host: str, port: int) -> None:
    """UserError unless `host`:`port` can be listened on (checked before the workers start)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(infos[0][4])
    except OSError as e:
        hint = "; try another --port" if e.errno == errno.EADDRINUSE else ""
        raise UserError(None, f"cannot listen on {host}:{port} ({e.strerror or e}){hint}") from None


__all__ = ["serve"]
