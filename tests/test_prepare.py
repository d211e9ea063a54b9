"""`dancegen prepare` and the windowed dataset, on a small synthetic dataset the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dancegen.cli import main
from dancegen.data import PreparedDataset, WindowDataset
from dancegen.data.prepare import prepare
from dancegen.data.representation import motion_to_rot6d, rot6d_to_motion
from dancegen.errors import UserError
from dancegen.motion import Motion

from conftest import FPS, STYLES, synthetic_motion as _motion


def test_rot6d_round_trip():
    m = _motion(0, 20)
    back = rot6d_to_motion(motion_to_rot6d(m), m.skeleton, m.fps)
    assert np.abs(back.positions() - m.positions()).max() < 1e-5


def test_prepare_layout_splits_stats_and_cache(synthetic: Path, tmp_path: Path, monkeypatch):
    out, cache = tmp_path / "prepared", tmp_path / "cache"
    manifest = prepare("synthetic", synthetic, out, cache_dir=cache, jobs=2, progress=False)
    data = PreparedDataset(out)
    assert data.features == {"rot6d": 147, "fact35": 35, "bailando438": 438}
    assert data.fps == FPS
    names = sorted(data.sequences)
    assert names == [f"seq{i}" for i in range(len(STYLES))]
    for n in names:
        frames = data.sequences[n]["frames"]
        for f, d in data.features.items():
            assert data.array(n, f).shape == (frames, d)
        assert np.allclose(data.motion(n).positions(), Motion.load(synthetic / f"{n}.npz").positions(), atol=1e-6)
    splits = {s: data.split(s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == names
    assert {data.sequences[n]["style"] for n in splits["test"]} == set(STYLES)
    # normalisation is fitted on train only
    train = np.concatenate([data.array(n, "rot6d") for n in splits["train"]])
    norm = data.normaliser("rot6d")
    assert np.allclose(norm.mean, train.mean(0), atol=1e-5)
    assert not np.allclose(norm.mean, np.concatenate([data.array(n, "rot6d") for n in names]).mean(0), atol=1e-5)
    assert manifest["splits"] == {s: len(v) for s, v in splits.items()}

    # a second run reuses every sequence: nothing is recomputed
    import dancegen.data.prepare as prep

    monkeypatch.setattr(prep, "_prepare_sequence", lambda *a: pytest.fail("recomputed an unchanged sequence"))
    assert prepare("synthetic", synthetic, out, cache_dir=cache, jobs=1, progress=False)["sequences"] == manifest["sequences"]


def test_prepare_failure_leaves_no_half_written_output(synthetic: Path, tmp_path: Path, capsys):
    (synthetic / "seq3.broken").touch()
    out = tmp_path / "prepared"
    code = main(["prepare", "synthetic", str(synthetic), "-o", str(out), "--features", "", "--jobs", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "seq3.npz: broken on purpose" in err
    assert not out.exists() or not any(out.iterdir())


def test_window_dataset_offsets_and_normalisation(synthetic: Path, tmp_path: Path):
    out = tmp_path / "prepared"
    prepare("synthetic", synthetic, out, recipes=("fact35",), cache_dir=tmp_path / "cache", jobs=1, progress=False)
    data = PreparedDataset(out)
    ds = WindowDataset(out, "train", inputs={"rot6d": (20, 0), "fact35": (30, -5)},
                       outputs={"rot6d": (5, 20)}, stride=3, normalise=False)
    expected = sum(len(range(0, data.sequences[n]["frames"] - 30 + 1, 3)) for n in data.split("train"))
    assert len(ds) == expected > 0
    name, start = ds.index[1]
    sample = ds[1]
    motion = data.array(name, "rot6d")
    # the earliest offset is -5, so window start `start` is frame start+5 of the sequence
    assert torch.equal(sample["inputs"]["rot6d"], torch.from_numpy(np.array(motion[start + 5:start + 25])))
    assert torch.equal(sample["outputs"]["rot6d"], torch.from_numpy(np.array(motion[start + 25:start + 30])))
    assert torch.equal(sample["inputs"]["fact35"], torch.from_numpy(np.array(data.array(name, "fact35")[start:start + 30])))
    normed = WindowDataset(out, "train", inputs={"rot6d": (20, 0)}, outputs={"rot6d": (5, 20)})
    batch = torch.cat([normed[i]["inputs"]["rot6d"] for i in range(0, len(normed), 5)])
    assert batch.mean().abs() < 0.5 and 0.3 < batch.std() < 2.0
    with pytest.raises(UserError, match="no modality"):
        WindowDataset(out, "train", inputs={"mel": (4, 0)}, outputs={})


def test_info_on_prepared_and_raw(synthetic: Path, tmp_path: Path, capsys):
    assert main(["info", str(synthetic), "-q"]) == 0
    text = capsys.readouterr().out
    assert "kind: synthetic" in text and "sequences: 7" in text and "fps: 30" in text
    assert "tango (1)" in text and "waltz (4)" in text
    out = tmp_path / "prepared"
    prepare("synthetic", synthetic, out, recipes=(), jobs=1, progress=False)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "prepared synthetic" in text and "rot6d (147)" in text
    assert json.loads((out / "dataset.json").read_text())["features"] == {"rot6d": {"dim": 147, "modality": "motion"}}
