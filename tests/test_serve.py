"""`dancegen serve`: the API with Starlette's TestClient (uploads, jobs, files), a fuzzed upload endpoint,
and the real thing: `dancegen serve` in a subprocess with a real worker, driven by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dancegen.errors import UserError
from dancegen.io import atomic_path
from dancegen.paths import DEMO_SONG

starlette = pytest.importorskip("starlette", reason="the web app needs starlette (pip install -r requirements.txt)")
from starlette.testclient import TestClient  # noqa: E402

from dancegen.serve.app import create_app  # noqa: E402
from dancegen.serve.jobs import Jobs  # noqa: E402
from dancegen.serve.songs import display_name, sniff  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("bvh", "npz", "html", "mp4")


# ---- a quick stand-in for the worker: writes small files and reports progress like run_job

def quick_runner(job_dir: str, song: str, model: str, options: dict, formats: tuple[str, ...], title: str) -> dict:
    from dancegen.io import write_text

    if options.get("seed") == 666:
        raise UserError(song, "the song is silent")
    if options.get("seed") == 667:
        raise RuntimeError("a bug")
    gate = GATES.get(options.get("seed"))
    write_text(Path(job_dir) / "progress.json", json.dumps({"stage": "dancing", "fraction": 0.5, "files": {}}))
    if gate is not None:
        gate.wait(60)
    files = {}
    for fmt in formats:
        write_text(Path(job_dir) / "out" / f"song.{fmt}", f"{fmt} of {Path(song).name}\n")
        files[fmt] = f"song.{fmt}"
    if options.get("seed") == 668:  # a report naming a file outside the job's folder is not served
        files = {"bvh": "../../../secret.bvh", "npz": "/etc/passwd"}
    return {"style": "waltz", "seconds": 2.0, "files": files}


GATES: dict[int, threading.Event] = {}


def make_client(tmp_path: Path, **options) -> TestClient:
    jobs = Jobs(tmp_path / "data", ThreadPoolExecutor(2), runner=quick_runner, formats=FORMATS,
                max_pending=options.pop("max_pending", 16))
    app = create_app(data_dir=tmp_path / "data", jobs=jobs, **options)
    return TestClient(app)


@pytest.fixture
def client(tmp_path: Path):
    with make_client(tmp_path, max_upload_mb=1, max_minutes=0.75) as c:
        yield c


def upload(client: TestClient, data: bytes, name: str = "song.ogg", content_type: str = "audio/ogg"):
    return client.post("/api/songs", files={"file": (name, data, content_type)})


def stored_files(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())


def wait_for(client: TestClient, job_id: str, states=("done", "failed"), timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")


# ---- uploads


def test_sniff_knows_audio_containers_by_their_first_bytes():
    assert sniff(DEMO_SONG.read_bytes()[:16]) == "ogg"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff(b"fLaC\x00\x00\x00\x22") == "flac"
    assert sniff(b"ID3\x04\x00") == "mp3" and sniff(b"\xff\xfb\x90\x64") == "mp3"
    assert sniff(b"\xff\xf1\x50\x80") == "aac"
    assert sniff(b"\x00\x00\x00\x20ftypM4A ") == "m4a"
    assert sniff(b"FORM\x00\x00\x00\x00AIFF") == "aiff"
    for other in (b"", b"RIFF\x00\x00\x00\x00AVI ", b"<html>", b"%PDF-1.4", b"\xff\xff\xff\xff", b"PK\x03\x04"):
        assert sniff(other) is None, other


def test_display_names_are_text_not_paths():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\me\\song.mp3") == "song.mp3"
    assert display_name("a\x00b\nc.ogg") == "abc.ogg"
    assert display_name("..") == "song" and display_name(None) == "song"
    assert len(display_name("x" * 500)) == 80


def test_upload_the_demo_song(client: TestClient, tmp_path: Path):
    r = upload(client, DEMO_SONG.read_bytes(), "../../../Lovely Song.ogg")
    assert r.status_code == 201, r.text
    song = r.json()
    assert song["name"] == "Lovely Song.ogg" and song["kind"] == "ogg" and 29 < song["seconds"] < 31
    assert stored_files(tmp_path / "data") == [f"songs/{song['id']}/song"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written beside the app's folder


@pytest.mark.parametrize("name, data, status, words", [
    ("big.ogg", b"OggS" + bytes(1_200_000), 413, "over the 1 MB limit"),
    ("empty.ogg", b"", 400, "empty"),
    ("notes.txt", b"just some text, not audio at all", 415, "not an audio file"),
    ("page.mp3", b"<html><script>alert(1)</script></html>", 415, "not an audio file"),
    ("fake.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), 422, "cannot be used"),
    ("cut.ogg", DEMO_SONG.read_bytes()[:3000], 422, "cannot be used"),
])
def test_bad_uploads_are_refused_with_a_clear_error(client: TestClient, tmp_path: Path, name, data, status, words):
    r = upload(client, data, name)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert stored_files(tmp_path / "data") == []


def test_too_long_a_song_is_refused(client: TestClient):
    r = upload(client, DEMO_SONG.read_bytes())  # 30 s, the limit here is 45 s: fine
    assert r.status_code == 201
    with make_client(client.app.state.data_dir.parent / "short", max_minutes=0.25) as short:
        r = upload(short, DEMO_SONG.read_bytes())
        assert r.status_code == 422 and "0.5 minutes long; the limit is 0.25 minutes" in r.json()["error"]


def test_malformed_upload_requests(client: TestClient):
    assert client.post("/api/songs", data={"nofile": "x"}).status_code == 400
    r = client.post("/api/songs", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and "error" in r.json()
    two = [("file", ("a.ogg", DEMO_SONG.read_bytes(), "audio/ogg")), ("file", ("b.ogg", b"OggS", "audio/ogg"))]
    assert client.post("/api/songs", files=two).status_code == 400
    r = client.post("/api/songs", content=b"x", headers={"content-length": str(50 * 2**20)})
    assert r.status_code == 413
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.ogg"\r\n\r\nOggS'
    chunks = iter([head] + [bytes(2**16)] * 40)  # 2.5 MB with no length said: cut off at the 1 MB limit
    r = client.post("/api/songs", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "1 MB" in r.json()["error"]
    assert client.get("/api/songs").status_code == 405


# ---- jobs


def test_info_names_models_not_paths(tmp_path: Path):
    models = tmp_path / "models"
    for name in ("mine", "../up", ".hidden", "no-config"):
        (models / name).mkdir(parents=True, exist_ok=True)
    for name in ("mine", ".hidden"):
        shutil.copy(DEMO_SONG.parent / "default" / "config.json", models / name / "config.json")
    with make_client(tmp_path, models_dir=models) as c:
        info = c.get("/api/info").json()
        assert [m["name"] for m in info["models"]] == ["default", "mine"]
        assert info["models"][0]["styles"][0] == "auto" and "waltz" in info["models"][0]["styles"]
        assert info["formats"] == list(FORMATS)
        assert str(tmp_path) not in json.dumps(info)
        r = c.post("/api/jobs", json={"song": "demo", "model": str(models / "mine")})
        assert r.status_code == 400 and "no such model" in r.json()["error"]
        r = c.post("/api/jobs", json={"song": "demo", "model": "mine", "seed": 3})
        assert r.status_code == 202
        assert wait_for(c, r.json()["id"])["model"] == "mine"


@pytest.mark.parametrize("body, status, words", [
    ({"song": "0123456789abcdef"}, 404, "no such song"),
    ({"song": "../../etc/passwd"}, 404, "no such song"),
    ({"song": "demo", "model": "../default"}, 400, "no such model"),
    ({"song": "demo", "style": "moonwalk"}, 400, "style must be one of auto"),
    ({"song": "demo", "seed": -1}, 400, "seed"),
    ({"song": "demo", "seed": "7"}, 400, "seed"),
    ({"song": "demo", "seed": True}, 400, "seed"),
    ({"song": "demo", "duration": 0.5}, 400, "duration"),
    ({"song": "demo", "duration": 1e9}, 400, "duration"),
    ({"song": "demo", "duration": "NaN"}, 400, "duration"),
    (["demo"], 400, "JSON object"),
])
def test_bad_job_requests(client: TestClient, body, status, words):
    r = client.post("/api/jobs", json=body)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_a_local_server_answers_only_to_its_own_names(tmp_path: Path):
    jobs = Jobs(tmp_path / "data", ThreadPoolExecutor(1), runner=quick_runner, formats=FORMATS)
    app = create_app(data_dir=tmp_path / "data", jobs=jobs, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as ok, TestClient(app, base_url="http://evil.example") as bad:
        assert ok.get("/").status_code == 200
        assert bad.get("/").status_code == 400  # DNS rebinding: another site's name pointing here


def test_jobs_come_as_json_only(client: TestClient):
    r = client.post("/api/jobs", content=b'{"song": "demo"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415  # a form on another site cannot start jobs (JSON needs a CORS preflight)


def test_job_lifecycle_and_reload(client: TestClient, tmp_path: Path):
    GATES[41] = gate = threading.Event()
    song = upload(client, DEMO_SONG.read_bytes(), "mine.ogg").json()
    r = client.post("/api/jobs", json={"song": song["id"], "style": "tango", "seed": 41, "duration": 2})
    assert r.status_code == 202
    job = r.json()
    assert job["state"] in ("queued", "running") and job["song"] == "mine.ogg" and job["files"] == {}
    running = wait_for(client, job["id"], states=("running",))
    assert running["stage"] == "dancing" and running["fraction"] == 0.5
    reloaded = TestClient(client.app)  # a reloaded page (a new connection) asks by the id in its URL
    assert reloaded.get(f"/api/jobs/{job['id']}").json()["state"] == "running"
    gate.set()
    done = wait_for(client, job["id"])
    assert done["state"] == "done" and done["seconds"] == 2.0 and done["seed"] == 41
    assert set(done["files"]) == set(FORMATS)
    r = client.get(done["files"]["bvh"])
    assert r.status_code == 200 and r.text == "bvh of song\n"
    assert 'filename="mine.bvh"' in r.headers["content-disposition"]
    view = client.get(f"/api/jobs/{job['id']}/view")
    assert view.status_code == 200 and view.headers["content-type"].startswith("text/html")
    assert "inline" in view.headers["content-disposition"]
    for bad in ("progress.json", "song.bvh", "%2e%2e", "..%2fprogress.json", "BVH", "txt"):
        assert client.get(f"/api/jobs/{job['id']}/files/{bad}").status_code == 404
    for bad_id in ("0123456789abcdef", "..", "%2e%2e%2fsongs", job["id"][:-1]):
        assert client.get(f"/api/jobs/{bad_id}").status_code == 404
        assert client.get(f"/api/jobs/{bad_id}/files/bvh").status_code == 404


def test_only_files_the_job_wrote_are_served(client: TestClient, tmp_path: Path):
    (tmp_path / "secret.bvh").write_text("secret")
    job = client.post("/api/jobs", json={"song": "demo", "seed": 668}).json()
    done = wait_for(client, job["id"])
    assert done["state"] == "done"
    for fmt in ("bvh", "npz"):
        assert client.get(f"/api/jobs/{job['id']}/files/{fmt}").status_code == 404


def test_failed_jobs_say_why(client: TestClient):
    bad = wait_for(client, client.post("/api/jobs", json={"song": "demo", "seed": 666}).json()["id"])
    assert bad["state"] == "failed" and bad["error"] == "the song is silent"
    bug = wait_for(client, client.post("/api/jobs", json={"song": "demo", "seed": 667}).json()["id"])
    assert bug["state"] == "failed" and "internal error (RuntimeError: a bug)" in bug["error"]


def test_queue_is_bounded(tmp_path: Path):
    GATES[42] = gate = threading.Event()
    with make_client(tmp_path, max_pending=3) as c:
        ids = [c.post("/api/jobs", json={"song": "demo", "seed": 42}).json()["id"] for _ in range(3)]
        r = c.post("/api/jobs", json={"song": "demo", "seed": 42})
        assert r.status_code == 503 and "waiting" in r.json()["error"]
        assert c.get(f"/api/jobs/{ids[2]}").json()["state"] == "queued"  # two workers: the third waits
        gate.set()
        assert all(wait_for(c, i)["state"] == "done" for i in ids)
        assert c.post("/api/jobs", json={"song": "demo", "seed": 42}).status_code == 202


def test_serve_command_errors_are_one_line(tmp_path: Path, capsys):
    from dancegen.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
    assert "Address already in use); try another --port" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path / "nope")]) == 2
    assert "no such folder of saved models" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 2


# ---- the upload endpoint fuzzed: every answer a 4xx JSON error or a song; no 500; no file elsewhere

FUZZ_EXAMPLES = int(os.environ.get("DANCEGEN_FUZZ_EXAMPLES", "150"))


def fuzz_samples() -> list[bytes]:
    """The demo song as OGG, WAV, FLAC and MP3 (real files to truncate and damage)."""
    import imageio_ffmpeg

    samples = [DEMO_SONG.read_bytes()]
    for fmt in ("wav", "flac", "mp3"):
        r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "3", "-i", str(DEMO_SONG),
                            "-f", fmt, "-"], capture_output=True, check=True)
        samples.append(r.stdout)
    return samples


def test_fuzz_the_upload_endpoint(tmp_path: Path):
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    samples = fuzz_samples()
    magics = [b"RIFF\x00\x00\x00\x00WAVE", b"OggS", b"fLaC", b"ID3", b"\xff\xfb", b"\x00\x00\x00\x18ftyp",
              b"FORM\x00\x00\x00\x00AIFF", b"\x1a\x45\xdf\xa3", b""]
    random_bytes = st.builds(lambda m, b: m + b, st.sampled_from(magics), st.binary(max_size=3000))
    truncated = st.builds(lambda s, n: s[: max(1, int(len(s) * n))], st.sampled_from(samples),
                          st.floats(0.0, 1.0))
    damaged = st.builds(lambda s, at, junk: s[:at] + junk + s[at + len(junk):], st.sampled_from(samples),
                        st.integers(0, 20000), st.binary(min_size=1, max_size=200))
    names = st.one_of(st.text(max_size=300), st.sampled_from(["../../x.ogg", "/etc/passwd", "..\\..\\x.wav", "",
                                                              ".", "..", "a/../../b.mp3", "\x00.ogg", "%2e%2e%2f"]))
    types = st.one_of(st.sampled_from(["audio/ogg", "audio/mpeg", "text/html", "application/octet-stream",
                                       "", "../../", "image/png; charset=utf-8"]),
                      st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
    counts = {"accepted": 0}
    data = tmp_path / "data"
    with make_client(tmp_path, max_upload_mb=0.5, max_minutes=0.75) as client:

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(content=st.one_of(random_bytes, truncated, damaged), name=names, content_type=types)
        def case(content, name, content_type):
            try:
                r = client.post("/api/songs", files={"file": (name, content, content_type)})
            except UnicodeEncodeError:  # httpx cannot put such a name in a header: no request to test
                counts["unsendable"] = counts.get("unsendable", 0) + 1
                return
            assert r.status_code == 201 or 400 <= r.status_code < 500, (r.status_code, r.text)
            body = r.json()
            if r.status_code == 201:
                counts["accepted"] += 1
                assert set(body) == {"id", "name", "seconds", "kind"}
                assert "/" not in body["name"] and "\\" not in body["name"]
            else:
                assert set(body) == {"error"} and body["error"], body
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
            assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
            for path in stored_files(data):
                parts = path.split("/")
                assert parts[0] == "songs" and len(parts) == 3 and parts[2] == "song", path

        case()
    print(f"upload fuzz: {FUZZ_EXAMPLES} examples: {counts}")


# ---- the real server: `dancegen serve` in a subprocess, one real worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def server_process(request, tmp_path_factory):
    """`dancegen serve` with one worker, started before this module's first test when a selected test
    needs it: its worker loads torch and librosa's kernels (tens of seconds) while the quick tests run."""
    if not any("server" in item.fixturenames for item in request.session.items):
        yield None
        return
    data = tmp_path_factory.mktemp("serve")
    port = free_port()
    with open(data / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dancegen.cli", "serve", "--port", str(port), "--workers", "1",
                                 "--data", str(data / "data")], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    yield proc, f"http://127.0.0.1:{port}", data / "server.log"
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def server(server_process) -> str:
    """The running server's URL, once it answers."""
    import httpx2 as httpx

    proc, url, log = server_process
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"dancegen serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def test_real_worker_makes_a_dance(server: str, tmp_path: Path):
    import httpx2 as httpx

    from dancegen.motion import read_bvh

    info = httpx.get(server + "/api/info", timeout=60).json()
    job = httpx.post(server + "/api/jobs", json={"song": "demo", "duration": 2, "seed": 5, "style": "waltz"}).json()
    deadline = time.time() + 150
    while (status := httpx.get(f"{server}/api/jobs/{job['id']}").json())["state"] not in ("done", "failed"):
        assert time.time() < deadline, status
        time.sleep(0.5)
    assert status["state"] == "done", status
    assert set(status["files"]) == set(info["formats"]) >= {"bvh", "npz", "mp4", "html"}
    bvh = tmp_path / "dance.bvh"
    bvh.write_bytes(httpx.get(server + status["files"]["bvh"]).content)
    motion = read_bvh(bvh)
    assert motion.skeleton.num_joints == 24 and abs(motion.duration - 2.0) < 0.1
    npz = tmp_path / "dance.npz"
    npz.write_bytes(httpx.get(server + status["files"]["npz"]).content)
    assert np.load(npz)["positions"].shape == (motion.num_frames, 24, 3)
    assert httpx.get(server + status["files"]["mp4"]).content[4:8] == b"ftyp"
    if "glb" in status["files"]:
        assert httpx.get(server + status["files"]["glb"]).content[:4] == b"glTF"


CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium, or make chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"])
        yield browser
        browser.close()


def watch_console(page) -> list[str]:
    errors = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return errors


# Reads the viewer's state: its frame counter (body data-frames), its time (the seek bar) and the audio clock.
VIEWER_STATE = """(doc) => ({frames: parseInt(doc.body.dataset.frames), status: doc.body.dataset.status,
    time: parseFloat(doc.getElementById('seek').value), audio: doc.getElementById('song').currentTime,
    paused: doc.getElementById('song').paused})"""


def check_plays_with_the_audio_clock(frame) -> None:
    """Press play in a viewer (a page or a frame), let it run ~1.5 s, and check that its frames and time
    advance and that its time is the audio element's clock."""
    frame.wait_for_function("document.body.dataset.status === 'ok'", timeout=20_000)
    frame.click("#play")
    frame.wait_for_function("document.getElementById('song').currentTime > 0.3", timeout=20_000)
    before = frame.evaluate(f"({VIEWER_STATE})(document)")
    time.sleep(1.0)
    after = frame.evaluate(f"({VIEWER_STATE})(document)")
    assert after["status"] == "ok" and not after["paused"], after
    assert after["frames"] > before["frames"] + 5, (before, after)  # the picture is redrawn
    assert after["audio"] > before["audio"] + 0.3, (before, after)  # the music plays
    assert after["time"] > before["time"] + 0.3, (before, after)  # the dance moves on
    assert abs(after["time"] - after["audio"]) < 0.25, after  # ... on the audio's clock


def test_the_app_in_chromium(server: str, browser, tmp_path: Path):
    """Upload the demo song, generate 3 s, reload while it runs, watch it play with the music, download the BVH."""
    from dancegen.motion import read_bvh

    context = browser.new_context(viewport={"width": 1100, "height": 640}, accept_downloads=True)
    page = context.new_page()
    errors = watch_console(page)
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=90_000)
    page.set_input_files("#file", {"name": "notes.mp3", "mimeType": "audio/mpeg", "buffer": b"not a song"})
    page.wait_for_function("document.getElementById('song-note').classList.contains('bad')", timeout=30_000)
    assert "notes.mp3 was refused: not an audio file" in page.inner_text("#song-note")
    for _ in range(50):  # the browser's own console line for the refused upload, and no other
        if errors:
            break
        page.wait_for_timeout(100)
    assert errors == ["console error: Failed to load resource: the server responded with a status of 415 "
                      "(Unsupported Media Type)"], errors
    errors.clear()
    page.set_input_files("#file", str(DEMO_SONG))
    page.wait_for_function("document.getElementById('song-note').textContent.includes('is ready')", timeout=30_000)
    page.select_option("#style", "waltz")
    page.fill("#seed", "7")
    page.fill("#duration", "3")
    page.click("#generate")
    page.wait_for_url("**/?job=*", timeout=10_000)
    job_id = page.url.split("job=")[1]
    page.reload()  # the job goes on and the page finds it again by the id in its URL
    page.wait_for_selector(f"body[data-job='{job_id}']", timeout=10_000)
    page.wait_for_selector("body[data-state='done']", timeout=150_000)
    assert "3 s of dance, style waltz, seed 7" in page.inner_text("#status")
    viewer = page.frame_locator("#viewer")
    frame = next(f for f in page.frames if f.url.endswith(f"/api/jobs/{job_id}/view"))
    check_plays_with_the_audio_clock(frame)
    assert viewer.locator("#play").inner_text().endswith("Pause")
    assert viewer.locator("#title").inner_text() == "demo_song"  # the uploaded song's name, not its file's
    # the README's picture: DANCEGEN_SCREENSHOTS=1 makes it anew, else the test leaves the checkout alone
    picture = REPO / "docs" / "images" / "serve.png" if os.environ.get("DANCEGEN_SCREENSHOTS") \
        else tmp_path / "serve.png"
    with atomic_path(picture) as shot:
        page.screenshot(path=str(shot))
    assert picture.stat().st_size > 10_000
    links = page.eval_on_selector_all("#downloads a", "as => as.map(a => a.dataset.format)")
    assert {"bvh", "npz", "mp4", "html"} <= set(links), links
    with page.expect_download() as download:
        page.click("#downloads a[data-format='bvh']")
    bvh = tmp_path / download.value.suggested_filename
    download.value.save_as(bvh)
    assert bvh.name == "demo_song.bvh"
    motion = read_bvh(bvh)
    assert motion.skeleton.num_joints == 24 and abs(motion.duration - 3.0) < 0.1
    # The exported NAME.html alone, from disk: it plays with its music too.
    with page.expect_download() as download:
        page.click("#downloads a[data-format='html']")
    alone = tmp_path / "dance.html"
    download.value.save_as(alone)
    page.goto(alone.as_uri())
    check_plays_with_the_audio_clock(page.main_frame)
    context.close()
    assert errors == [], errors
