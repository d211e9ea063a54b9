"""MP4 and HTML outputs on a 2-second synthetic dance and a sine-wave song."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from dancegen.errors import UserError
from dancegen.motion import Motion, Skeleton, smpl_skeleton
from dancegen.render import render_video, write_html
from dancegen.render.frames import FrameDrawer
from dancegen.render.figure import CENTRE, LEFT, RIGHT, Figure, joint_side
from dancegen.render.html import decode_positions, encode_positions

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 640, 480


@pytest.fixture(scope="module")
def motion() -> Motion:
    """2 s at 30 fps: travels 1 m along +X while both arms swing up and down."""
    fps, n = 30, 60
    t = np.arange(n) / fps
    rotations = np.zeros((n, 24, 3))
    names = smpl_skeleton().names
    swing = 1.2 * np.sin(2 * np.pi * t)
    rotations[:, names.index("lshoulder"), 2] = swing
    rotations[:, names.index("rshoulder"), 2] = -swing
    rotations[:, names.index("lknee"), 0] = 0.4 * (1 + np.sin(2 * np.pi * t))
    root = np.stack([t / 2, np.full(n, 0.9), np.zeros(n)], axis=1)
    return Motion(fps, smpl_skeleton(), root, rotations)


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("song") / "sine.wav"
    sr = 22050
    t = np.arange(int(sr * 3.0)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return str(path)


@pytest.fixture(scope="module")
def video(motion, song, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "dance.mp4"
    render_video(motion, path, song=song, song_offset=0.5, progress=False)
    return path


def _ffmpeg_info(path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def _duration(info: str) -> float:
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()
    return 3600 * int(h) + 60 * int(m) + float(s)


def _frames(path) -> np.ndarray:
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def _figure_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels in the figure's left (blue) or right (orange) colour; floor and sky are near grey."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    return (b - r > 70) | (r - b > 70)


def test_video_is_h264_aac_30fps_with_the_motion_duration(video, motion):
    info = _ffmpeg_info(video)
    assert re.search(r"Video: h264 .*yuv420p.*640x480.* 30 fps", info), info
    assert "Audio: aac" in info, info
    assert abs(_duration(info) - motion.duration) < 0.1, info


def test_video_frames_show_a_moving_figure(video):
    frames = _frames(video)
    assert len(frames) == pytest.approx(60, abs=1)
    first, later = frames[0], frames[15]
    assert first.std() > 10  # not blank: sky, floor and figure
    a, b = _figure_mask(first), _figure_mask(later)
    assert a.sum() > 500 and b.sum() > 500  # the figure is big enough to read
    assert (a ^ b).sum() > 0.2 * a.sum()  # its arms moved
    # The camera follows: the figure stays near the middle while the dancer travels 1 m.
    for frame in (frames[0], frames[-1]):
        cols = np.nonzero(_figure_mask(frame))[1]
        assert W * 0.25 < cols.mean() < W * 0.75


def test_floor_is_checkered_and_slides_as_the_camera_follows(motion):
    drawer = FrameDrawer(motion.positions(), Figure.of(motion.skeleton), motion.fps, (W, H))
    corner = [drawer.rgb(i)[H - 60:, :80].astype(int) for i in (0, 15)]  # floor only, away from the figure
    assert np.ptp(corner[0].mean(axis=-1)) > 20  # dark and light checks
    assert np.abs(corner[0] - corner[1]).mean() > 5  # the dancer travelled 0.16 m: the checks moved


def test_video_without_song_has_no_audio(motion, tmp_path):
    path = render_video(motion[:15], tmp_path / "silent.mp4", progress=False)
    info = _ffmpeg_info(path)
    assert "Video: h264" in info and "Audio:" not in info


def test_interrupted_render_leaves_no_file(motion, song, tmp_path, monkeypatch):
    draw = FrameDrawer.draw

    def draw_then_interrupt(self, frame):
        if frame == 10:
            raise KeyboardInterrupt
        return draw(self, frame)

    monkeypatch.setattr(FrameDrawer, "draw", draw_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        render_video(motion, tmp_path / "dance.mp4", song=song, progress=False)
    assert list(tmp_path.iterdir()) == []


CTRL_C_SCRIPT = """
import signal, sys, numpy as np
# A job started in the background by a non-interactive shell (as CI may run us) inherits SIGINT
# ignored; a terminal's Ctrl-C reaches Python's own handler, so install it as a terminal would have.
signal.signal(signal.SIGINT, signal.default_int_handler)
from dancegen.motion import Motion, Skeleton, smpl_skeleton
from dancegen.render import render_video
n = 30 * 600  # ten minutes: still rendering when the interrupt comes
motion = Motion(30, smpl_skeleton(), np.tile([0, 0.9, 0], (n, 1)), np.zeros((n, 24, 3)))
render_video(motion, sys.argv[1], song=sys.argv[2], progress=False)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_leaves_no_file_and_no_ffmpeg(song, tmp_path):
    out = tmp_path / "dance.mp4"
    # A new session stands in for the terminal's foreground process group that Ctrl-C signals.
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(out), song], start_new_session=True,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".dance.mp4.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".dance.mp4.*")), "rendering never started"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    stderr = proc.communicate(timeout=30)[1]
    assert "KeyboardInterrupt" in stderr
    assert list(tmp_path.iterdir()) == []
    assert not _processes_mentioning(str(tmp_path)), "ffmpeg outlived the interrupted render"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (Linux /proc; empty elsewhere)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if text in args and "pytest" not in args:
            found.append(args.replace("\0", " "))
    return found


def test_bad_song_is_a_user_error_and_leaves_no_file(motion, song, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio at all\n" * 100)
    with pytest.raises(UserError, match="notes.mp3"):
        render_video(motion, tmp_path / "a.mp4", song=bad, progress=False)
    with pytest.raises(UserError, match="after the song ends"):
        render_video(motion, tmp_path / "b.mp4", song=song, song_offset=10.0, progress=False)
    with pytest.raises(UserError, match="notes.mp3"):
        write_html(motion, tmp_path / "c.html", song=bad)
    with pytest.raises(UserError, match="after the song ends"):
        write_html(motion, tmp_path / "d.html", song=song, song_offset=10.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp3"]


def _html_parts(page: str) -> dict:
    data = re.search(r'<script id="dance-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(data.group(1))


def test_html_is_self_contained_and_holds_music_and_motion(motion, song, tmp_path):
    path = write_html(motion, tmp_path / "dance.html", song=song, song_offset=0.5, title="a <test>")
    assert [p.name for p in tmp_path.iterdir()] == ["dance.html"]
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert not re.search(r"""<[a-z]+[^>]*\s(?:src|href)\s*=\s*["']?(?!["']|data:)""", page), "an external reference"
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(|<link|<iframe", page)
    assert "<title>a &lt;test&gt;</title>" in page

    audio = re.search(r'<audio id="song"[^>]* src="data:audio/mpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert audio, "no embedded audio"
    mp3 = tmp_path / "out" / "song.mp3"
    mp3.parent.mkdir()
    mp3.write_bytes(base64.b64decode(audio.group(1)))
    assert abs(_duration(_ffmpeg_info(mp3)) - motion.duration) < 0.15

    data = _html_parts(page)
    assert (data["frames"], data["joints"], data["fps"]) == (60, 24, 30)
    positions = decode_positions(data["positions"], data["scale"], data["frames"], data["joints"])
    np.testing.assert_allclose(positions, motion.positions(), atol=1e-3)


def test_html_without_song_has_no_audio_source(motion, tmp_path):
    page = write_html(motion, tmp_path / "dance.html").read_text(encoding="utf-8")
    assert 'src="data:audio' not in page and "<title>dance</title>" in page


def test_html_joint_names_cannot_break_out_of_the_data_script(motion, tmp_path):
    sk = motion.skeleton
    names = tuple(n if n != "head" else "head</script><!--<script>" for n in sk.names)
    odd = Motion(motion.fps, Skeleton(names, sk.parents, sk.offsets), motion.root_translation, motion.rotations)
    page = write_html(odd, tmp_path / "odd.html").read_text(encoding="utf-8")
    assert page.count("</script>") == 2  # the data's and the viewer's
    assert _html_parts(page)["names"] == list(names)


def test_positions_beyond_32_m_still_fit_int16():
    positions = np.array([[[40.0, 1.0, -50.123]]], dtype=np.float32)
    data, scale = encode_positions(positions)
    assert scale == 2
    np.testing.assert_allclose(decode_positions(data, scale, 1, 1), positions, atol=scale / 2000 + 1e-6)


def test_figure_sides_and_trunk_from_joint_names():
    fig = Figure.of(smpl_skeleton())
    names = smpl_skeleton().names
    side_of = {names[c]: s for (p, c), s in zip(fig.bones.tolist(), fig.sides.tolist())}
    assert side_of["lknee"] == LEFT and side_of["relbow"] == RIGHT and side_of["spine"] == CENTRE
    assert fig.trunk.sum() == 3 and names[fig.head] == "head"
    assert joint_side("LeftForeArm", {"LeftForeArm", "RightForeArm"}) == LEFT
    assert joint_side("l_knee", {"l_knee", "r_knee"}) == LEFT
    assert joint_side("lowerback", {"lowerback"}) == CENTRE


CHROMIUM = shutil.which("chromium")

# Injected into a copy of the page. Headless Chromium schedules animation frames unreliably under
# virtual time, so frames come from a timer instead; then press play, orbit and zoom, wait for the
# time to move on, and pause with the space bar.
TIMER_FRAMES = "<script>window.requestAnimationFrame = (f) => setTimeout(() => f(performance.now()), 16);</script>"
SELF_TEST = """<script>
setTimeout(() => {
  const r = {}, view = document.getElementById("view"), play = document.getElementById("play");
  play.click();
  r.afterClick = play.textContent;
  view.dispatchEvent(new PointerEvent("pointerdown", {pointerId: 7, clientX: 100, clientY: 100, bubbles: true}));
  view.dispatchEvent(new PointerEvent("pointermove", {pointerId: 7, clientX: 220, clientY: 130, bubbles: true}));
  view.dispatchEvent(new PointerEvent("pointerup", {pointerId: 7, bubbles: true}));
  view.dispatchEvent(new WheelEvent("wheel", {deltaY: 120, bubbles: true, cancelable: true}));
  let tries = 0;
  const wait = setInterval(() => {
    r.time = parseFloat(document.getElementById("seek").value);
    if (r.time > 0 || ++tries > 40) {
      clearInterval(wait);
      window.dispatchEvent(new KeyboardEvent("keydown", {code: "Space", key: " "}));
      r.afterSpace = play.textContent;
      document.body.dataset.selftest = JSON.stringify(r);
    }
  }, 100);
}, 200);
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("with_song", [True, False])
def test_html_plays_in_headless_chromium(motion, song, tmp_path, with_song):
    path = write_html(motion, tmp_path / "dance.html", song=song if with_song else None)
    page = path.read_text(encoding="utf-8")
    page = page.replace("<head>", "<head>" + TIMER_FRAMES, 1).replace("</body>", SELF_TEST + "</body>")
    path.write_text(page, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000", "--window-size=480,360", "--dump-dom",
           path.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[-2000:]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(0)))
    assert attrs["status"] == "ok" and int(attrs["frames"]) >= 1, body.group(0)
    result = json.loads(html.unescape(attrs["selftest"]))
    assert "Pause" in result["afterClick"] and "Play" in result["afterSpace"], result
    assert result["time"] > 0, result  # the dance moved on while playing
