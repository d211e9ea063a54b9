"""Safe model files (issue 10): a saved model is safetensors + config.json, loading never unpickles,
and every broken model folder is a one-line UserError naming the file."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dancegen.cli import main
from dancegen.errors import UserError
from dancegen.models import DEFAULT_MODEL, load_model
from dancegen.models.bailando import BailandoModel
from dancegen.models.base import FORMAT_VERSION
from dancegen.models.diffusion import DiffusionModel

PACKAGE = Path(__file__).resolve().parents[1] / "dancegen"
TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], down=4, codes=16, code_dim=8, channels=16,
            context=8, d_model=32, layers=1, heads=2, ff=64, music_channels=8, vq_window=16, dropout=0.0)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "model"
    BailandoModel(**TINY).save(folder)
    return folder


def one_line_error(folder, file: str | None = None) -> str:
    with pytest.raises(UserError) as e:
        load_model(folder)
    message = str(e.value)
    assert "\n" not in message, message
    if file:
        assert e.value.path == str(Path(folder) / file), message
    return message


def test_save_load_round_trip_with_a_format_version(saved: Path):
    config = json.loads((saved / "config.json").read_text())
    assert config["family"] == "bailando" and config["format_version"] == FORMAT_VERSION == 1
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    model = load_model(saved)
    assert isinstance(model, BailandoModel) and not model.training
    torch.manual_seed(0)
    fresh = BailandoModel(**TINY).state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in model.state_dict().items())
    assert load_model(saved / "model.safetensors").config == model.config  # either file names the folder


def test_a_config_without_format_version_is_version_1(saved: Path):
    config = json.loads((saved / "config.json").read_text())
    del config["format_version"]
    (saved / "config.json").write_text(json.dumps(config))
    assert isinstance(load_model(saved), BailandoModel)


def test_the_training_styles_travel_with_the_model_and_an_unseen_style_means_none(saved: Path):
    from dancegen.models.base import style_id

    model = load_model(saved)
    assert model.trained_styles is None and model.style_index("tango") == style_id("tango")  # not recorded: all
    model.trained_styles = ("rumba", "waltz")
    model.save(saved)
    assert json.loads((saved / "config.json").read_text())["trained_styles"] == ["rumba", "waltz"]
    model = load_model(saved)
    assert model.trained_styles == ("rumba", "waltz")
    assert model.style_index("waltz") == style_id("waltz") > 0 and model.style_index("tango") == 0
    config = json.loads((saved / "config.json").read_text())
    config["trained_styles"] = "waltz"
    (saved / "config.json").write_text(json.dumps(config))
    assert "trained_styles" in one_line_error(saved, "config.json")


def test_the_style_skeletons_travel_with_the_model_and_a_broken_one_is_one_line(saved: Path):
    model = load_model(saved)
    assert model.style_skeletons is None and model.skeleton_of("rumba") is model.skeleton  # not recorded
    longer = model.skeleton.offsets * np.array([1.0, 1.2, 1.0], np.float32)
    model.style_skeletons = {"rumba": longer}
    model.save(saved)
    model = load_model(saved)
    assert np.allclose(model.skeleton_of("rumba").offsets, longer, atol=1e-6)
    assert model.skeleton_of("waltz") is model.skeleton and model.skeleton_of(None) is model.skeleton
    config = json.loads((saved / "config.json").read_text())
    config["style_skeletons"] = {"rumba": [[0.0, 1.0, 0.0]] * 3}  # 3 joints, not 24
    (saved / "config.json").write_text(json.dumps(config))
    assert "style_skeletons" in one_line_error(saved, "config.json")


def test_the_bundled_default_model_loads():
    assert json.loads((DEFAULT_MODEL / "config.json").read_text()).get("format_version", 1) <= FORMAT_VERSION
    assert load_model("default").name == "bailando"


@pytest.mark.parametrize("case, file, words", [
    ("newer format", "config.json", "newer dancegen"),
    ("format not a number", "config.json", "format_version"),
    ("unknown family", "config.json", "unknown model family 'hiphop9000'"),
    ("no family", "config.json", "unknown model family None"),
    ("not json", "config.json", "not JSON"),
    ("json list", "config.json", "not a JSON object"),
    ("not utf-8", "config.json", "cannot read"),
    ("bad keyword value", "config.json", "cannot build"),
    ("wrong shapes", "model.safetensors", "wrong shape"),
    ("absurd sizes", "model.safetensors", "wrong shape"),
    ("other family's weights", "model.safetensors", "do not fit"),
    ("missing tensor", "model.safetensors", "1 missing tensors"),
    ("wrong dtype", "model.safetensors", "wrong shape or type"),
    ("no weights", "model.safetensors", "missing"),
    ("empty weights", "model.safetensors", "damaged or not a safetensors file"),
    ("garbled weights", "model.safetensors", "damaged or not a safetensors file"),
    ("truncated weights", "model.safetensors", "damaged or not a safetensors file"),
    ("a pickle", "model.safetensors", "damaged or not a safetensors file"),
])
def test_a_broken_model_folder_is_a_one_line_error_naming_the_file(saved: Path, tmp_path: Path, case, file, words):
    config_path, weights = saved / "config.json", saved / "model.safetensors"
    config = json.loads(config_path.read_text())
    from safetensors.torch import load_file, save_file

    if case == "newer format":
        config["format_version"] = FORMAT_VERSION + 1
    elif case == "format not a number":
        config["format_version"] = "two"
    elif case == "unknown family":
        config["family"] = "hiphop9000"
    elif case == "no family":
        del config["family"]
    elif case == "bad keyword value":
        config["codes"] = "many"
    elif case == "wrong shapes":
        config["d_model"] = 64  # the weights are for 32
    elif case == "absurd sizes":
        config["d_model"], config["ff"] = 2 ** 20, 2 ** 24  # terabytes if built for real: checked on meta first
    elif case == "other family's weights":
        DiffusionModel(d_model=16, layers=1, ff=32, heads=2, window=30, overlap=10).save(tmp_path / "other")
        shutil.copy(tmp_path / "other" / "model.safetensors", weights)
    elif case == "missing tensor":
        tensors = load_file(str(weights))
        tensors.pop(sorted(tensors)[0])
        save_file(tensors, str(weights))
    elif case == "wrong dtype":
        save_file({k: v.double() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()},
                  str(weights))
    elif case == "no weights":
        weights.unlink()
    elif case == "empty weights":
        weights.write_bytes(b"")
    elif case == "garbled weights":
        data = bytearray(weights.read_bytes())
        data[8:40] = b"\xff" * 32
        weights.write_bytes(bytes(data))
    elif case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "a pickle":  # what torch.save writes; loading must not unpickle it
        torch.save({"x": torch.zeros(3)}, weights)
    if case in ("not json", "json list", "not utf-8"):
        config_path.write_bytes({"not json": b"{'family': 'bailando',", "json list": b"[1, 2]",
                                 "not utf-8": b'{"family": "\xff\xfe"}'}[case])
    else:
        config_path.write_text(json.dumps(config))
    message = one_line_error(saved, file)
    assert words in message, message


def test_the_command_says_it_in_one_line_with_exit_code_2(saved: Path, tmp_path: Path, capsys):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "format_version": 7}))
    code = main(["generate", "-o", str(tmp_path / "out"), "--model", str(saved), "--duration", "2", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(saved / "config.json") in err and "version 7" in err, err


PICKLERS = ("pickle", "_pickle", "dill", "joblib", "cloudpickle", "pandas")
LOADS = ("load", "loads", "Unpickler", "read_pickle")
SAFE_PICKLE = "dancegen/datasets/safe_pickle.py"  # the restricted unpickler: plain data only


def unsafe_loads(source: str, where: str) -> list[str]:
    """The calls and imports in `source` that could unpickle: torch.load without weights_only=True,
    Lightning's ckpt_path without weights_only=True, np.load(allow_pickle=True), pickle/joblib/dill
    loaders (allowed only in datasets/safe_pickle.py). Writing pickles (pickle.dump) is no risk."""
    problems = []
    tree = ast.parse(source, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            true = lambda k: isinstance(kw.get(k), ast.Constant) and kw[k].value is True  # noqa: E731
            if name.endswith("torch.load") and not true("weights_only"):
                problems.append(f"{where}:{node.lineno}: {name} without weights_only=True")
            if "ckpt_path" in kw and not true("weights_only"):
                problems.append(f"{where}:{node.lineno}: ckpt_path without weights_only=True")
            if name.endswith("np.load") and true("allow_pickle"):
                problems.append(f"{where}:{node.lineno}: np.load(allow_pickle=True)")
            if name.split(".")[0] in PICKLERS and name.split(".")[-1] in LOADS and where != SAFE_PICKLE:
                problems.append(f"{where}:{node.lineno}: {name}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS \
                and any(a.name in LOADS for a in node.names) and where != SAFE_PICKLE:
            problems.append(f"{where}:{node.lineno}: imports a loader from {node.module}")
    return problems


def test_nothing_in_the_package_unpickles_outside_the_restricted_unpickler():
    problems = [p for path in sorted(PACKAGE.rglob("*.py"))
                for p in unsafe_loads(path.read_text(), path.relative_to(PACKAGE.parent).as_posix())]
    assert not problems, "\n".join(problems)


def test_the_scan_flags_what_it_exists_to_flag():
    code = ("import torch, pickle\nfrom pickle import loads\npickle.load(f)\npickle.dump(x, f)\ntorch.load('x.ckpt')\ntorch.load('y.ckpt', weights_only=True)\n"
            "trainer.fit(m, ckpt_path='x')\ntrainer.fit(m, ckpt_path='x', weights_only=True)\n"
            "np.load('a', allow_pickle=True)\nnp.load('a')\n")
    found = unsafe_loads(code, "dancegen/training/x.py")
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports a loader from pickle", "pickle.load", "torch.load without weights_only=True", "ckpt_path without weights_only=True",
        "np.load(allow_pickle=True)"], found
