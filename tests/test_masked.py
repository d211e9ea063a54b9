"""The masked family (dancegen/models/masked.py) on a tiny model, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion, train_steps
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import load_model
from dancegen.models.masked import MaskedMotionModel, bert_mask, task_mask
from dancegen.motion import SMPL_JOINT_NAMES

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], window=40, overlap=10, d_model=32, heads=2, ff=64,
            motion_layers=1, music_layers=1, layers=1, dropout=0.0)



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def tiny(**kw) -> MaskedMotionModel:
    torch.manual_seed(0)
    return MaskedMotionModel(**{**TINY, **kw}).eval()


def batch_of(model: MaskedMotionModel, n: int = 8, rot6d: np.ndarray | None = None, fact35: np.ndarray | None = None) -> dict:
    w = model.window
    if rot6d is None:
        rot6d = np.stack([motion_to_rot6d(synthetic_motion(i, w)) for i in range(n)])
        fact35 = np.random.default_rng(0).normal(size=(n, w, 35)).astype(np.float32)
    return {"inputs": {"fact35": torch.from_numpy(fact35)}, "outputs": {"rot6d": torch.from_numpy(rot6d)},
            "style": ["waltz", "rumba"] * (len(rot6d) // 2), "has_music": torch.ones(len(rot6d), dtype=torch.bool)}


def test_bert_masking_statistics():
    g = torch.Generator().manual_seed(0)
    chosen, zeroed, randomised = bert_mask((400, 200), 0.15, (0.8, 0.1, 0.1), generator=g)
    assert (chosen.sum(1) == 30).all()  # exactly 15% of each window's frames
    kept = chosen & ~zeroed & ~randomised
    assert not (zeroed & randomised).any() and not ((zeroed | randomised) & ~chosen).any()
    n = chosen.sum().item()
    for mask, share in ((zeroed, 0.8), (randomised, 0.1), (kept, 0.1)):
        assert abs(mask.sum().item() / n - share) < 0.01, (mask.sum().item() / n, share)


def test_fine_tuning_masks():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        m = task_mask("continuation", 120, (2, 40), g)
        given = (~m).sum().item()
        assert not m[:given].any() and m[given:].all() and given <= 60
        m = task_mask("inbetween", 120, (2, 40), g)
        assert m.any() and (~m).any()


def test_loss_falls_on_a_tiny_batch_in_both_fusions():
    for fusion in ("features", "sequence"):
        model = tiny(fusion=fusion)
        batch = batch_of(model)
        before = fixed_loss(model, batch)
        train_steps(model, batch, 20, 3e-3)
        assert fixed_loss(model, batch) < 0.85 * before, fusion


def test_fill_keeps_given_frames_and_generate_continues():
    model = tiny(fusion="sequence")
    rot6d = motion_to_rot6d(synthetic_motion(0, 100))
    known = np.zeros(100, bool)
    known[::7] = True
    filled = model.fill(rot6d, known, None)
    assert filled.shape == rot6d.shape and np.array_equal(filled[known], rot6d[known])
    for frames in (30, 97):  # within one window; several windows
        motion = model.generate(music(frames), length=frames)
        assert motion.num_frames == frames and motion.skeleton.names == SMPL_JOINT_NAMES
        assert np.isfinite(motion.rotations).all()
    assert model.generate(music(90, fps=30.0), length=90).num_frames == 90
    motion, gap = continuation_gap(model, synthetic_motion(1, 50))
    assert np.isfinite(gap)


def test_save_load_round_trip(tmp_path: Path):
    model = tiny(fusion="sequence")
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, MaskedMotionModel) and again.fusion == "sequence"
    a, b = (m.generate(music(50), length=50) for m in (model, again))
    assert np.array_equal(a.rotations, b.rotations)


def test_a_few_steps_on_real_data_lower_the_loss(real_dance):
    rot6d, fact35, style = real_dance
    model = tiny(window=60)
    normalise_like(model, rot6d, fact35)
    model.motion_mean[[0, 2]], model.motion_std[[0, 2]] = 0.0, 1.0
    model.set_stage("finetune")  # BERT's loss falls slowly: its masked frames start from the interpolation hint
    starts = np.arange(0, 800, 100)
    batch = batch_of(model, rot6d=np.stack([rot6d[s:s + 60] for s in starts]),
                     fact35=np.stack([fact35[s:s + 60] for s in starts]))
    before = fixed_loss(model, batch)
    train_steps(model, batch, 40, 3e-3)
    assert fixed_loss(model, batch) < 0.85 * before


def test_train_with_motion_only_data(tmp_path: Path, synthetic, monkeypatch):
    """`dancegen train` with `data.extra`: pre-training sees the extra (motion-only) windows, fine-tuning not."""
    import yaml

    from dancegen.data.prepare import prepare
    from dancegen.training import train

    monkeypatch.chdir(tmp_path)
    prepare("synthetic", synthetic, tmp_path / "paired", recipes=("fact35",), jobs=1, progress=False)
    prepare("synthetic", synthetic, tmp_path / "motion", recipes=(), jobs=1, progress=False)
    config = {"data": {"path": "paired", "extra": [{"path": "motion"}]},
              "model": {"family": "masked", **{k: v for k, v in TINY.items() if k not in ("fps", "music_dims")},
                        "window": 20},
              "training": {"batch_size": 4, "val_every": 2, "stages": {"pretrain": {"max_steps": 2},
                                                                       "finetune": {"max_steps": 2}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = train(tmp_path / "c.yaml", tmp_path / "out", progress=False)
    assert (out / "best" / "config.json").is_file() and (out / "last" / "model.safetensors").is_file()


def test_interpolation_hint_by_hand():
    from dancegen.models.masked import interpolate_frames

    x = torch.tensor([[0.0, 9, 9, 9, 4, 9, 9], [9, 9, 2, 9, 9, 9, 9], [9] * 7])[..., None]
    known = torch.tensor([[1, 0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0] * 7], dtype=torch.bool)
    out = interpolate_frames(x, known)[..., 0]
    assert out[0].tolist() == [0, 1, 2, 3, 4, 4, 4]  # linear between keys, the last key held after
    assert out[1].tolist() == [2] * 7 and out[2].tolist() == [0] * 7  # one key: held; none: zeros


def test_inbetween_windows_scored_between_their_keys():
    model = tiny(inbetween_scores="between", finetune_tasks={"inbetween": 1.0})
    model.set_stage("finetune")
    chosen, zeroed, _ = model.corrupt(torch.zeros(64, 40, 147), torch.Generator().manual_seed(0))
    for c, z in zip(chosen, zeroed):
        given = torch.nonzero(~z)[:, 0]
        scored = torch.nonzero(c)[:, 0]
        assert (scored > given.min()).all() and (scored < given.max()).all() and z[scored].all()


def test_bridge_gate_by_hand():
    from dancegen.models.masked import bridge_gate

    known = torch.tensor([[0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0], [0] * 12], dtype=torch.bool)
    gate = bridge_gate(known, 4.0) ** 2 * 4  # the spread b, clamped at the horizon
    expected = [2, 1, 0, 3 / 4, 1, 3 / 4, 0, 1, 2, 3, 4, 4]  # one-sided outside the keys; d1 d2 / (d1 + d2) between
    assert torch.allclose(gate[0], torch.tensor(expected)), gate[0]
    assert (gate[1] == 4).all()  # no key: the whole horizon


def test_bridge_correction_starts_at_the_interpolation():
    """Untrained (its correction head zero), a bridge model fills the gap with its hint, linear in the
    features: the root moves as `interpolate`'s, the rotations are the nearest to the linearly
    interpolated 6-D vectors (within 2° of slerp over a short gap); the keys come back exactly."""
    from scipy.spatial.transform import Rotation

    from dancegen.data.representation import rot6d_to_motion
    from dancegen.inbetween import interpolate

    model = tiny(correction="bridge", canonical_heading=True)
    motion = synthetic_motion(2, 30)
    rot6d = motion_to_rot6d(motion)
    for keys in (np.array([0, 1, 2, 3, 4, 20]), np.array([0, 1, 2, 3, 4, 10])):
        known = np.isin(np.arange(30), keys)
        filled = model.fill(rot6d, known, None)
        assert np.array_equal(filled[known], rot6d[known])
        gap = slice(5, keys[-1])
        w = (np.arange(5, keys[-1]) - 4) / (keys[-1] - 4)
        linear = rot6d[4] + w[:, None] * (rot6d[keys[-1]] - rot6d[4])
        ours, slerp = rot6d_to_motion(filled, motion.skeleton, 25.0), interpolate(motion, keys)
        np.testing.assert_allclose(ours.rotations[gap], rot6d_to_motion(linear, motion.skeleton, 25.0).rotations,
                                   atol=1e-4)
        np.testing.assert_allclose(ours.root_translation[gap], slerp.root_translation[gap], atol=1e-5)
    angle = (Rotation.from_rotvec(ours.rotations[gap].reshape(-1, 3)).inv()
             * Rotation.from_rotvec(slerp.rotations[gap].reshape(-1, 3))).magnitude()
    assert 0 < angle.max() < np.radians(2.0), np.degrees(angle.max())  # keys up to 34° apart


def test_canonical_heading_fills_turned_windows_alike():
    """With `canonical_heading` the model sees each window turned to face +Z at its first given frame:
    a window turned about the vertical (and moved) is filled exactly as turned; without it, not."""
    from dancegen.models.diffusion import _rotate_yaw

    rot6d = torch.from_numpy(motion_to_rot6d(synthetic_motion(3, 40)))
    turned = _rotate_yaw(rot6d[None], torch.tensor([2.1]))[0] + torch.tensor([1.5, 0, -0.7] + [0] * 144)
    known = np.zeros(40, bool)
    known[3:8] = known[25] = True
    for canonical in (True, False):
        model = tiny(correction="bridge", canonical_heading=canonical)
        torch.nn.init.normal_(model.correct.weight, std=0.05)  # a correction that depends on the pose
        a = _rotate_yaw(torch.from_numpy(model.fill(rot6d.numpy(), known, None))[None], torch.tensor([2.1]))[0]
        b = torch.from_numpy(model.fill(turned.numpy(), known, None)) - torch.tensor([1.5, 0, -0.7] + [0] * 144)
        assert torch.allclose(a, b, atol=1e-4) == canonical


def test_bridge_loss_falls_and_old_configs_keep_their_head():
    model = tiny(correction="bridge", canonical_heading=True)
    model.set_stage("finetune")
    batch = batch_of(model)
    before = fixed_loss(model, batch)
    train_steps(model, batch, 60, 3e-3)  # slower at first than the plain head: the correction starts at zero
    assert fixed_loss(model, batch) < 0.9 * before
    assert not hasattr(tiny(), "correct")  # a saved model without `correction` loads as before


def test_linear_gate_scales_the_correction_by_the_bridge_variance():
    """`correction_gate: linear`: the gate is the sqrt gate squared, and the same correction head moves each
    filled frame off the hint by exactly that gate (the ratio of the two fills' corrections)."""
    from dancegen.models.masked import bridge_gate

    known = torch.tensor([[0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.allclose(bridge_gate(known, 4.0, "linear"), bridge_gate(known, 4.0) ** 2)
    with pytest.raises(ValueError, match="correction_gate"):
        tiny(correction="bridge", correction_gate="cubic")
    rot6d = motion_to_rot6d(synthetic_motion(4, 40))
    given = np.zeros(40, bool)
    given[[0, 1, 2, 30]] = True
    fills = {}
    for gate in ("sqrt", "linear", "none"):
        model = tiny(correction="bridge", correction_gate="linear" if gate == "none" else gate)
        torch.nn.init.normal_(model.correct.weight, std=0.05)
        if gate == "none":
            torch.nn.init.zeros_(model.correct.weight)  # the hint alone
        fills[gate] = model.fill(rot6d, given, None)
    ratio = (fills["linear"] - fills["none"])[3:30, 3] / (fills["sqrt"] - fills["none"])[3:30, 3]
    gates = bridge_gate(torch.from_numpy(given)[None], 16.0)[0, 3:30].numpy()
    np.testing.assert_allclose(ratio, gates, rtol=1e-3)  # linear / sqrt = sqrt gate
    assert gates.min() < 0.5 < gates.max()


def test_position_error_is_the_benchmarks_l2p():
    """`position_error` on normalised windows is L2P (dancegen/metrics/inbetween.py) of the same frames."""
    from dancegen.metrics.inbetween import global_pose, l2p
    from dancegen.motion import Motion

    model = tiny(position_loss=1.0)
    std = torch.rand(24, 3, generator=torch.Generator().manual_seed(0)) + 0.2
    model.position_std.copy_(std)
    motions = [synthetic_motion(i, 30) for i in (1, 2)]
    rot6d = [motion_to_rot6d(m) for m in motions]
    normalise_like(model, rot6d[0], np.random.default_rng(0).normal(size=(30, 35)).astype(np.float32))
    known = torch.ones(1, 30, dtype=torch.bool)
    x = [model.normalise(torch.from_numpy(r)[None], known)[0] for r in rot6d]  # x/z from each one's first frame
    positions = [global_pose(Motion(m.fps, model.skeleton, m.root_translation - m.root_translation[0] * [1, 0, 1],
                                    m.rotations))[0][None] for m in motions]
    expected = l2p(positions[0], positions[1], np.zeros((24, 3)), std.double().numpy())
    assert expected > 1.0
    assert float(model.position_error(x[0], x[1]).mean()) == pytest.approx(expected, rel=1e-4)
    assert float(model.position_error(x[0], x[0]).max()) < 1e-3


def test_position_loss_falls_and_takes_l2p_normalisation_from_the_train_split(tmp_path: Path, synthetic):
    from dancegen.data.prepare import prepare
    from dancegen.metrics.inbetween import position_stats
    from dancegen.training.train import prepared_data

    prepare("synthetic", synthetic, tmp_path / "paired", recipes=("fact35",), jobs=1, progress=False)
    data = prepared_data({"path": str(tmp_path / "paired")})
    config = {k: v for k, v in TINY.items() if k not in ("fps", "music_dims")}
    model = MaskedMotionModel.for_data(data, **config, correction="bridge", position_loss=1.0, feature_loss=0.0)
    expected = position_stats(data.motion(n) for n in data.split("train"))[1]
    np.testing.assert_allclose(model.position_std.numpy(), expected, rtol=1e-5)
    assert not hasattr(MaskedMotionModel.for_data(data, **config), "position_std")  # only with the loss
    model = tiny(correction="bridge", position_loss=1.0, feature_loss=0.0)  # L2P alone
    model.position_std.copy_(torch.from_numpy(expected))
    model.set_stage("finetune")
    batch = batch_of(model)
    before = fixed_loss(model, batch)
    train_steps(model, batch, 40, 3e-3)  # slowly: the correction head starts at zero
    assert fixed_loss(model, batch) < 0.95 * before


def test_correct_root_false_keeps_the_root_linear_between_keys():
    """`correct_root: false`: the filled root path is interpolation's (linear between the keys) while the
    rotations are still corrected; with the root corrected (the default) the path bends."""
    from dancegen.data.representation import rot6d_to_motion
    from dancegen.inbetween import interpolate

    motion = synthetic_motion(5, 40)
    rot6d = motion_to_rot6d(motion)
    keys = np.array([0, 1, 2, 3, 30])
    known = np.isin(np.arange(40), keys)
    hint = tiny(correction="bridge", canonical_heading=True).fill(rot6d, known, None)
    linear = interpolate(motion, keys).root_translation[4:30]
    for correct_root in (False, True):
        model = tiny(correction="bridge", canonical_heading=True, correct_root=correct_root)
        torch.nn.init.normal_(model.correct.weight, std=0.05)
        filled = rot6d_to_motion(model.fill(rot6d, known, None), motion.skeleton, 25.0)
        assert np.allclose(filled.root_translation[4:30], linear, atol=1e-5) != correct_root
        assert not np.allclose(filled.rotations[4:30], rot6d_to_motion(hint, motion.skeleton, 25.0).rotations[4:30],
                               atol=1e-3)
