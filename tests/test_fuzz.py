"""Bad input, tried on purpose (issue 10): property-based tests of the parsers that read files from
users and datasets. Each target is a reader; every input hypothesis makes must either read (and give
finite numbers) or raise a one-line UserError naming the file. Never another exception, never a hang
(an alarm stops each case), never a file written beside the input or in the working folder.

Targets: the BVH reader; Dance with Melody's config.json and skeletons.json (through to the solved
motion); the restricted unpickler (plain data, joblib inert reading, evil pickles that would run
code); AIST++ motion pickles and Motorica's joblib skeleton and npz takes; the audio loader on
damaged, truncated, mislabelled and empty files.

In CI each target runs a modest number of cases (profile "ci"). `benchmarks/fuzz.py` runs the same
targets at scale (profile "fuzz", DANCEGEN_FUZZ_EXAMPLES cases each) and writes the counts.
"""

from __future__ import annotations

import io
import json
import re
import os
import pickle
import signal
import subprocess
import tempfile
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dancegen.audio import decode  # noqa: E402
from dancegen.datasets import aist, dance_with_melody, motorica  # noqa: E402
from dancegen.datasets.safe_pickle import Inert, load_array_pickle, load_inert_joblib  # noqa: E402
from dancegen.errors import UserError  # noqa: E402
from dancegen.motion import Motion, read_bvh, smpl_skeleton, write_bvh  # noqa: E402

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
settings.register_profile("ci", max_examples=int(os.environ.get("DANCEGEN_FUZZ_CI", "60")), derandomize=True,
                          **_COMMON)
settings.register_profile("fuzz", max_examples=int(os.environ.get("DANCEGEN_FUZZ_EXAMPLES", "2000")), **_COMMON)
PROFILE = os.environ.get("DANCEGEN_FUZZ_PROFILE", "ci")
settings.load_profile(PROFILE)

CASES: Counter = Counter()  # target -> cases run (benchmarks/fuzz.py reports it)
OUTCOMES: Counter = Counter()  # (target, "read" or the UserError's first words)


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so that no parser's `except Exception` swallows it."""


@contextmanager
def alarm(seconds: float):
    def ring(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def sandbox():
    """A fresh folder, also the working folder, for one case; afterwards nothing may have been added."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        root = Path(tmp)
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(here)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def attempt(target: str, read, path: Path, root: Path, seconds: float = 10.0):
    """`read(path)` under the rules: a result, or a one-line UserError naming `path` (or a file in it);
    no other exception, no hang, nothing new under `root`."""
    CASES[target] += 1
    before = files_under(root)
    try:
        with alarm(seconds):
            result = read(path)
    except UserError as e:
        message = str(e)
        assert "\n" not in message and "\r" not in message, f"{target}: error of several lines: {message!r}"
        assert e.path is not None and e.path.startswith(str(path)), f"{target}: error does not name the file: {message}"
        OUTCOMES[(target, " ".join(re.sub(r"line \d+: |frame \d+ |\d+", "", e.problem).split()[:4]))] += 1
        result = None
    else:
        OUTCOMES[(target, "read")] += 1
    assert files_under(root) == before, f"{target}: files appeared: {files_under(root) - before}"
    return result


def read_case(target: str, name: str, data: bytes, read, seconds: float = 10.0):
    """`data` written as `name` in a sandbox and read by `read` under the rules of `attempt`."""
    with sandbox() as root:
        path = root / name
        path.write_bytes(data)
        return attempt(target, read, path, root, seconds)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Each edit (where, how, payload): 0 overwrite, 1 insert, 2 delete len(payload)+1 bytes, 3 truncate."""
    buf = bytearray(data)
    for where, how, payload in edits:
        i = where % (len(buf) + 1)
        if how == 0:
            buf[i:i + len(payload)] = payload
        elif how == 1:
            buf[i:i] = payload
        elif how == 2:
            del buf[i:i + len(payload) + 1]
        else:
            del buf[i:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 3), st.binary(max_size=12)), max_size=6)


# --- BVH -----------------------------------------------------------------------------------

def _valid_bvh() -> str:
    rng = np.random.default_rng(0)
    motion = Motion(30.0, smpl_skeleton(), rng.normal(0, 0.1, (3, 3)) + [0, 0.9, 0], rng.normal(0, 0.3, (3, 24, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        write_bvh(motion, Path(tmp) / "a.bvh")
        return (Path(tmp) / "a.bvh").read_text()


VALID_BVH = _valid_bvh()
BVH_LINES = VALID_BVH.splitlines()
BVH_WORDS = ["nan", "inf", "-inf", "1e400", "-1e308", "0", "-0", "1e-320", "99999999999999999999", "-3", "{", "}",
             "ROOT", "JOINT", "End", "Site", "OFFSET", "CHANNELS", "0", "3", "6", "7", "-1", "MOTION", "HIERARCHY",
             "Frames:", "Frame Time:", "Xrotation", "Yrotation", "Zrotation", "Xposition", "Wrotation", "pelvis",
             "\x00", "\ufeff", "é", "\t", "", "1,5", "0x10", "+", "--2", "nan(0x1)", "1_000", "١٢"]


@st.composite
def bvh_texts(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 8:
        return draw(st.binary(max_size=400))
    lines = list(BVH_LINES)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))  # where: uniform over the file
    for _ in range(draw(st.integers(1, 6))):
        i = int(rng.integers(0, len(lines)))
        op = draw(st.sampled_from([0, 4, 5, 2, 1, 3]))
        if op == 0:  # a word replaced
            words = lines[i].split(" ")
            j = int(rng.integers(0, len(words)))
            words[j] = draw(st.sampled_from(BVH_WORDS) | st.text(max_size=8))
            lines[i] = " ".join(words)
        elif op == 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, lines[int(rng.integers(0, len(lines)))])
        elif op == 3:
            lines = lines[:i]
        elif op == 4:
            lines[i] = lines[i] + " " + draw(st.sampled_from(BVH_WORDS))
        else:
            lines.insert(i, " ".join(draw(st.lists(st.sampled_from(BVH_WORDS), max_size=5))))
        if not lines:
            break
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return mutate(data, draw(EDITS)) if kind == 9 else data


@given(bvh_texts())
def test_bvh_reader(data: bytes):
    motion = read_case("bvh", "dance.bvh", data, read_bvh)
    if motion is not None:
        assert motion.num_frames >= 1 and np.isfinite(motion.positions()).all()


# --- Dance with Melody: config.json and skeletons.json ---------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@st.composite
def dance_with_melody_folders(draw) -> dict[str, bytes]:
    frames = draw(st.sampled_from([3, 2, 5, 1, 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    scale = draw(st.sampled_from([30.0, 1.0, 1e12, 1e-9, 0.0]))
    rest = np.array([[0, 100, 0]]) + rng.normal(0, scale, (23, 3))  # degenerate to absurd bodies
    skeletons = {"length": frames, "center": (rng.normal(0, 50, (frames, 3))).round(3).tolist(),
                 "skeletons": (rest + rng.normal(0, scale / 10 + 1e-12, (frames, 23, 3))).round(4).tolist()}
    config = {"start_position": draw(st.integers(0, 500)), "end_position": 600}
    for doc in (skeletons, config):
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(sorted(doc) + ["extra"]))
            if draw(st.booleans()):
                doc.pop(key, None)
            else:
                doc[key] = draw(JSON_VALUES)
    files = {"skeletons.json": json.dumps(skeletons).encode(), "config.json": json.dumps(config).encode()}
    if draw(st.booleans()):  # text-level damage, for the fast number reader
        name = draw(st.sampled_from(sorted(files)))
        files[name] = mutate(files[name], draw(EDITS))
    if draw(st.integers(0, 9)) == 9:
        del files[draw(st.sampled_from(sorted(files)))]
    return files


@given(dance_with_melody_folders())
def test_dance_with_melody_json(files: dict[str, bytes]):
    with sandbox() as root:
        folder = root / "DANCE_W_1"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        seq = attempt("dance-with-melody json", dance_with_melody.load_sequence, folder, root, seconds=20)
        if seq is not None:
            assert np.isfinite(seq.motion.positions()).all() and np.isfinite(seq.offset)


# --- pickles: the restricted unpickler, AIST++ motions, Motorica's joblib skeleton ------------

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5)
    | st.builds(lambda n, d: np.arange(n, dtype=d), st.integers(0, 5), st.sampled_from(["f4", "f8", "i2", "u1", "c8"])),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
MARK = "pwned.txt"  # what an evil pickle tries to create in the working folder


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_pickles() -> list[bytes]:
    import builtins
    import shutil

    calls = [(os.system, (f"touch {MARK}",)), (builtins.eval, (f"open({MARK!r}, 'w')",)),
             (builtins.exec, (f"open({MARK!r}, 'w')",)), (subprocess.call, (["touch", MARK],)),
             (builtins.open, (MARK, "w")), (shutil.copy, (__file__, MARK)), (np.save, (MARK, np.zeros(1))),
             (Path.touch, (Path(MARK),)), (builtins.__import__, ("os",)), (np.load, (MARK,))]
    out = [pickle.dumps(_Evil(f, *a), protocol=p) for f, a in calls for p in (0, 2, 5)]
    out.append(pickle.dumps(Counter(a=1)))  # a harmless class is still a class: refused
    out.append(pickle.dumps(np.array([{"x": 1}], dtype=object)))  # an array of objects is not plain data
    out.append(pickle.dumps({"poses": np.zeros((2, 72)), "x": _Evil(os.system, f"touch {MARK}")}))
    return out


EVIL = _evil_pickles()


@st.composite
def pickles(draw) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return mutate(draw(st.sampled_from(EVIL)), draw(EDITS)) if draw(st.booleans()) else draw(st.sampled_from(EVIL))
    data = pickle.dumps(draw(PLAIN), protocol=draw(st.integers(0, 5)))
    return mutate(data, draw(EDITS)) if kind >= 3 else data


def plain(x) -> bool:
    """Only plain data and numeric numpy arrays: what the array unpickler may hand back."""
    if x is None or isinstance(x, (bool, int, float, complex, str, bytes, np.generic, np.dtype)):
        return not (isinstance(x, np.generic) and x.dtype.hasobject)
    if isinstance(x, np.ndarray):
        return not x.dtype.hasobject
    if isinstance(x, (list, tuple)):
        return all(plain(v) for v in x)
    if isinstance(x, dict):
        return all(plain(k) and plain(v) for k, v in x.items())
    return False


@given(pickles())
def test_restricted_unpickler(data: bytes):
    with sandbox() as root:
        path = root / "motion.pkl"
        path.write_bytes(data)
        result = attempt("safe_pickle arrays", load_array_pickle, path, root)
        assert result is None or plain(result), f"not plain data: {type(result)}"
        if data in EVIL:
            assert result is None, "an evil pickle was loaded"
        tree = attempt("safe_pickle joblib", load_inert_joblib, path, root)
        assert tree is None or plain(tree) or _inert_tree(tree)
        assert not (root / MARK).exists()


def _inert_tree(x, depth: int = 0) -> bool:
    if depth > 50 or plain(x):
        return True
    if isinstance(x, Inert):
        return all(_inert_tree(v, depth + 1) for v in (x.args, x.kwargs, x.state))
    if isinstance(x, np.ndarray):  # an object array (joblib's pipelines hold them) of inert items
        return all(_inert_tree(v, depth + 1) for v in x.ravel().tolist())
    if isinstance(x, (list, tuple, set, frozenset)):
        return all(_inert_tree(v, depth + 1) for v in x)
    if isinstance(x, dict):
        return all(_inert_tree(k, depth + 1) and _inert_tree(v, depth + 1) for k, v in x.items())
    return type(x).__name__.startswith("Inert[")  # a stand-in class itself


def _full(shape, fill, dtype) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.full(shape, fill, dtype=np.float64).astype(dtype)


ARRAYS = st.one_of(
    st.builds(lambda shape, d, fill: _full(shape, fill, d),
              st.lists(st.integers(0, 4), max_size=3).map(tuple), st.sampled_from(["f4", "f8", "i4", "u1", "?", "c8"]),
              st.sampled_from([0, 1, -1, 0.5, float("nan"), float("inf"), 1e300])),
    PLAIN)


@st.composite
def aist_pickles(draw) -> bytes:
    t = draw(st.sampled_from([3, 1, 2, 0]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    data = {"smpl_poses": rng.normal(size=(t, 72)), "smpl_trans": rng.normal(size=(t, 3)),
            "smpl_scaling": np.array([draw(st.sampled_from([1.0, 90.0, 0.0, -1.0, float("nan")]))]), "smpl_loss": 0.1}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(data)))
        if draw(st.booleans()):
            data.pop(key)
        else:
            data[key] = draw(ARRAYS)
    raw = pickle.dumps(data if draw(st.integers(0, 9)) < 9 else draw(PLAIN), protocol=draw(st.integers(0, 5)))
    return mutate(raw, draw(EDITS)) if draw(st.integers(0, 3)) == 3 else raw


@given(aist_pickles())
def test_aist_motion_pickles(data: bytes):
    motion = read_case("aist pkl", "gBR_sBM_cAll_d04_mBR0_ch01.pkl", data, aist.load_motion)
    if motion is not None:
        assert np.isfinite(motion.positions()).all()


def _joblib_skeleton(joints: int, rng) -> bytes:
    import joblib

    names = [f"j{i}" for i in range(joints)]
    skeleton = {n: {"parent": None if i == 0 else names[max(0, i - 1 - int(rng.integers(0, 2)))], "channels": ["Xrotation"],
                    "offsets": (rng.normal(0, 5, 3) + [0, 200 / joints, 0]).tolist(), "order": "ZXY", "children": []}
                for i, n in enumerate(names)}
    for n, v in skeleton.items():
        if v["parent"]:
            skeleton[v["parent"]]["children"].append(n)
    buf = io.BytesIO()
    joblib.dump({"pipeline": [("mocap", {"skeleton": skeleton, "scale": np.ones(3)})]}, buf)
    return buf.getvalue()


@st.composite
def motorica_skeletons(draw) -> bytes:
    raw = _joblib_skeleton(draw(st.integers(1, 6)), np.random.default_rng(draw(st.integers(0, 1000))))
    return mutate(raw, draw(EDITS)) if draw(st.booleans()) else raw


@given(motorica_skeletons())
def test_motorica_joblib_skeleton(data: bytes):
    skeleton = read_case("motorica sav", "data_pipe.sav", data, motorica.read_pipeline_skeleton)
    if skeleton is not None:
        assert np.isfinite(skeleton.offsets).all()


@st.composite
def motorica_takes(draw) -> bytes:
    t = draw(st.sampled_from([3, 1, 0]))
    arrays = {"motion": np.zeros((t, 3)), "motion_columns": np.array(["Hips_Xrotation", "Hips_Yrotation", "Hips_Zrotation"]),
              "audio_feats": np.zeros((t, 2)), "audio_columns": np.array(["a", "b"]), "fps": np.float64(30)}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(arrays)))
        if draw(st.booleans()):
            arrays.pop(key)
        else:
            value = draw(ARRAYS)
            arrays[key] = value if isinstance(value, np.ndarray) else np.array(0.0)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return mutate(buf.getvalue(), draw(EDITS)) if draw(st.booleans()) else buf.getvalue()


@given(motorica_takes())
def test_motorica_npz_takes(data: bytes):
    read_case("motorica npz", "take.npz", data, motorica.read_take)


def _motion_npz() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        Motion(30.0, smpl_skeleton(), np.zeros((4, 3)), np.zeros((4, 24, 3))).save(Path(tmp) / "m.npz")
        return (Path(tmp) / "m.npz").read_bytes()


MOTION_NPZ = _motion_npz()


@st.composite
def motion_npz(draw) -> bytes:
    """dancegen's own motion npz (a --seed-motion or --key-poses file), often damaged."""
    return mutate(MOTION_NPZ, draw(EDITS)) if draw(st.booleans()) else draw(st.binary(max_size=400))


@given(motion_npz())
def test_motion_npz_reader(data: bytes):
    read_case("motion npz", "dance.npz", data, Motion.load)


# --- audio -----------------------------------------------------------------------------------

def _audio_samples() -> dict[str, bytes]:
    """Half a second of clicks in each container the loader reads, made once."""
    sr = 8000
    t = np.arange(sr // 2) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.1) < 0.02)).astype(np.float32)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ext, fmt in (("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG")):
            sf.write(Path(tmp) / f"a.{ext}", y, sr, format=fmt)
            out[ext] = (Path(tmp) / f"a.{ext}").read_bytes()
        ffmpeg = decode._ffmpeg()
        for ext in ("mp3", "m4a"):
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(Path(tmp) / "a.wav"), str(Path(tmp) / f"a.{ext}")],
                           check=True, timeout=60)
            out[ext] = (Path(tmp) / f"a.{ext}").read_bytes()
    return out


AUDIO = _audio_samples()


@st.composite
def damaged_audio(draw) -> tuple[str, bytes]:
    source = draw(st.sampled_from(sorted(AUDIO)))
    ext = draw(st.sampled_from([source] * 3 + sorted(AUDIO) + ["txt", "", "mp4"]))  # often the wrong extension
    data = AUDIO[source]
    kind = draw(st.integers(0, 5))
    if kind == 0:
        data = b""
    elif kind == 1:
        data = draw(st.binary(max_size=300))
    elif kind == 2:
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == 3:  # the header's first bytes kept, the rest garbage
        data = data[: draw(st.integers(0, 64))] + draw(st.binary(min_size=0, max_size=400))
    else:
        data = mutate(data, draw(EDITS))
    return ext, data


@settings(max_examples=max(10, settings().max_examples // (2 if PROFILE == "ci" else 1)))  # ffmpeg is slow
@given(damaged_audio())
def test_audio_loader_on_damaged_files(case: tuple[str, bytes]):
    ext, data = case
    y = read_case("audio", f"song.{ext}" if ext else "song", data, lambda p: decode.load(p, 22050), seconds=30)
    if y is not None:
        assert y.dtype == np.float32 and y.ndim == 1 and len(y) and np.isfinite(y).all()


def test_a_hang_and_a_write_would_be_caught(tmp_path: Path):
    """The harness is real: a reader that hangs, one that writes and one that raises something else fail it."""
    import time

    with sandbox() as root:
        path = root / "x"
        path.write_bytes(b"x")
        with pytest.raises(Hang):
            attempt("self-test", lambda p: time.sleep(5), path, root, seconds=0.2)
        with pytest.raises(AssertionError, match="files appeared"):
            attempt("self-test", lambda p: (root / "out.txt").write_text("x"), path, root)
        with pytest.raises(ZeroDivisionError):
            attempt("self-test", lambda p: 1 / 0, path, root)
        with pytest.raises(AssertionError, match="several lines"):
            attempt("self-test", lambda p: (_ for _ in ()).throw(UserError(p, "a\nb")), path, root)


def pytest_report() -> dict:
    return {"cases": dict(CASES), "outcomes": {f"{t}: {o}": n for (t, o), n in sorted(OUTCOMES.items())}}


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    report = os.environ.get("DANCEGEN_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(pytest_report(), indent=1) + "\n")
