"""The Dancing-to-Music family (dancegen/models/d2m.py) on a tiny model, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion,
                      train_steps, window_batch)
from dancegen.errors import UserError
from dancegen.models import load_model
from dancegen.models.d2m import D2MModel
from dancegen.motion import SMPL_JOINT_NAMES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], unit=16, window_units=4, channels=16,
            pose_latent=8, movement_latent=8, hidden=32, layers=1, music_channels=8, critic_channels=16,
            initial_pose_bank=16)


def tiny(**kw) -> D2MModel:
    torch.manual_seed(0)
    return D2MModel(**{**TINY, **kw}).eval()


def test_unit_vae_round_trip_shapes():
    model = tiny()
    units = torch.randn(5, 16, 148)
    pose_mean, pose_logvar = model.vae.encode_pose(units[:, 0])
    move_mean, move_logvar = model.vae.encode_movement(units)
    assert pose_mean.shape == pose_logvar.shape == (5, 8)
    assert move_mean.shape == move_logvar.shape == (5, 8)
    assert model.vae.decode(pose_mean, move_mean).shape == (5, 16, 148)
    with pytest.raises(ValueError, match="multiple of 4"):
        D2MModel(**{**TINY, "unit": 18})


def test_each_stage_lowers_its_loss_and_trains_only_its_parts():
    model = tiny()
    batch = window_batch(model)
    extractor = [p.clone() for p in model.style_extractor.parameters()]
    for stage, frozen, factor in (("vae", [model.composer, model.motion_critic, model.style_critic], 0.5),
                                  ("compose", [model.vae], 0.9)):
        model.set_stage(stage)
        kept = [p.clone() for part in frozen for p in part.parameters()]
        before = fixed_loss(model, batch)
        train_steps(model, batch, 40, 3e-3)
        assert fixed_loss(model, batch) < factor * before, stage
        assert all(torch.equal(a, b) for a, b in zip(kept, (p for part in frozen for p in part.parameters()))), stage
    assert all(torch.equal(a, b) for a, b in zip(extractor, model.style_extractor.parameters()))
    assert not any(p.requires_grad for p in model.style_extractor.parameters())


def test_critics_learn_only_from_their_own_loss():
    """The generator's adversarial terms must not move the critics, and the critics' terms not the composer."""
    model = tiny()
    model.set_stage("compose")
    model.train()
    _, terms = model.loss(window_batch(model))
    assert {"reconstruction", "alignment", "motion_critic", "motion_adversarial", "style_critic",
            "style_adversarial"} <= set(terms)
    from dancegen.models.d2m import _adversarial

    real, fake = torch.randn(2, 64, 148), torch.randn(2, 64, 148, requires_grad=True)
    critic_loss, fooled = _adversarial(model.motion_critic, (real,), (fake,))
    fooled.backward()
    assert all(p.grad is None for p in model.motion_critic.parameters())
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    critic_loss.backward()
    assert all(p.grad is not None for p in model.motion_critic.parameters())
    dancer, critics = model.optimiser_groups()  # each side its own group: its own clipping and learning rate
    assert {id(p) for p in critics["params"]} == {id(p) for c in (model.motion_critic, model.style_critic)
                                                  for p in c.parameters()}
    assert len(dancer["params"]) + len(critics["params"]) == len(list(model.parameters()))
    assert critics["lr_scale"] == model.critic_lr_scale


@pytest.mark.parametrize("switch, missing", [({"style_weight": 0.0}, {"style_critic", "style_adversarial"}),
                                             ({"align_weight": 0.0}, {"alignment"}),
                                             ({"adversarial_weight": 0.0}, {"motion_critic", "motion_adversarial"})])
def test_ablation_switches_remove_their_loss_terms(switch, missing):
    model = tiny(**switch)
    model.set_stage("compose")
    model.train()
    _, terms = model.loss(window_batch(model))
    assert not missing & set(terms)
    assert "reconstruction" in terms
    if "style_weight" in switch:
        assert model.style_critic is None and not any("style_critic" in k for k in model.state_dict())


def test_ablation_configs_change_one_switch_and_share_the_vae():
    from dancegen.training.train import read_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    main, base = read_config(configs / "d2m.yaml"), read_config(configs / "d2m_ablation_base.yaml")
    assert base["model"]["vae_from"] == main["out"] + "/best" and base["training"]["run_stages"] == ["compose"]
    assert {k: v for k, v in base["model"].items() if main["model"].get(k) != v} == {"vae_from": "out/d2m/best"}
    for name, change in (("d2m_no_style", {"style_weight": 0.0}), ("d2m_no_align", {"align_weight": 0.0}),
                         ("d2m_lstm", {"rnn": "lstm"})):
        config = read_config(configs / f"{name}.yaml")
        assert {k: v for k, v in config["model"].items() if base["model"].get(k) != v} == change
        assert config["training"] == base["training"]
    assert isinstance(tiny(rnn="lstm").composer.rnn, torch.nn.LSTM)


def test_compose_stage_starts_from_the_vae_of_vae_from(tmp_path: Path):
    source = tiny()
    source.initial_poses.normal_()
    source.initial_poses_known.fill_(True)
    source.save(tmp_path / "source")
    torch.manual_seed(1)
    model = D2MModel(**{**TINY, "rnn": "lstm", "style_weight": 0.0, "vae_from": str(tmp_path / "source")})
    composer = [p.clone() for p in model.composer.parameters()]
    model.set_stage("compose")
    model.before_stage("compose", data=None)  # the source's initial poses are known: no data needed
    for k, v in source.state_dict().items():
        if k.startswith(("vae.", "initial_poses")):
            assert torch.equal(v, model.state_dict()[k]), k
    assert all(torch.equal(a, b) for a, b in zip(composer, model.composer.parameters()))
    other = D2MModel(**{**TINY, "channels": 8, "vae_from": str(tmp_path / "source")})
    with pytest.raises(UserError, match="unit VAE"):
        other.before_stage("compose", data=None)


def test_generate_is_deterministic_per_seed_with_right_length():
    model = tiny()
    song = music(150)  # more than one generation window (4 units of 16 frames)
    a, b, c = (model.generate(song, seed=s) for s in (0, 0, 1))
    assert a.num_frames == 150 and a.fps == 25.0
    assert a.skeleton.names == SMPL_JOINT_NAMES and np.isfinite(a.rotations).all()
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not np.allclose(a.rotations, c.rotations)
    short = model.generate(song, length=37, seed=0)
    assert short.num_frames == 37
    at_30 = model.generate(music(90, fps=30.0), seed=0)  # music at 30 fps: the dance too
    assert at_30.fps == 30.0 and at_30.num_frames == 90


@pytest.mark.parametrize("blend", [0, 4])
def test_units_chain_onto_the_frame_before(blend):
    model = tiny(blend=blend)
    generator = torch.Generator().manual_seed(0)
    last = torch.randn(2, 148)
    x, _ = model.compose(torch.randn(2, 32, 35), torch.randn(2, 8), generator, last=last)
    assert x.shape == (2, 32, 148)
    joined = torch.allclose(x[:, 0], last, atol=1e-5) and torch.allclose(x[:, 16], x[:, 15], atol=1e-5)
    assert joined == bool(blend)


def test_initial_pose_from_training_units_or_prior_and_from_a_seed_motion():
    model = tiny()
    song = music(40)
    assert not bool(model.initial_poses_known)
    assert np.array_equal(model.generate(song, initial_pose="data").rotations,
                          model.generate(song, initial_pose="prior").rotations)  # nothing collected: the prior
    model.initial_poses.copy_(torch.randn(16, 8) * 3)
    model.initial_poses_known.fill_(True)
    assert not np.allclose(model.generate(song, initial_pose="data").rotations,
                           model.generate(song, initial_pose="prior").rotations)
    seed_motion = synthetic_motion(0, 30)
    seed_motion.root_translation[:, [0, 2]] += [2.0, -1.0]
    _, gap = continuation_gap(model, seed_motion)
    assert gap < 0.2


def test_save_and_load_round_trip(tmp_path: Path):
    model = tiny(rnn="lstm", style_weight=0.0)
    model.initial_poses_known.fill_(True)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, D2MModel) and isinstance(loaded.composer.rnn, torch.nn.LSTM)
    assert loaded.style_critic is None and bool(loaded.initial_poses_known)
    assert loaded.config["style_classifier"]["feature"] == "fact35"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    song = music(70)
    assert np.array_equal(model.generate(song, seed=3).rotations, loaded.generate(song, seed=3).rotations)


def test_a_few_steps_on_real_windows_lower_the_loss(real_dance):
    rot6d, fact35, style = real_dance
    # the supervised terms only: a tiny critic wins within a few steps on 7 windows (the critics have their test)
    model = tiny(unit=32, window_units=4, adversarial_weight=0.0, style_weight=0.0)
    normalise_like(model, rot6d, fact35)
    frames = model.windows()[0]["fact35"][0]
    starts = range(0, len(rot6d) - frames - 1, 100)
    batch = {"inputs": {"fact35": torch.from_numpy(np.stack([fact35[s:s + frames] for s in starts]))},
             "outputs": {"rot6d": torch.from_numpy(np.stack([rot6d[s:s + frames + 1] for s in starts]))},
             "style": [style] * len(starts)}
    for stage, factor in (("vae", 0.7), ("compose", 0.5)):
        model.set_stage(stage)
        before = fixed_loss(model, batch)
        train_steps(model, batch, 30, 1e-2)
        assert fixed_loss(model, batch) < factor * before, stage
