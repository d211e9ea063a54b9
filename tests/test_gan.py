"""The adversarial music-to-pose model (dancegen/models/gan.py) on tiny networks: shapes, the R1 penalty,
the two networks' separate gradients, generation, saving, `dancegen train` with its own parameter groups,
and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion, train_steps
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import load_model
from dancegen.models.base import _MODELS
from dancegen.models.gan import Discriminator, GANModel, frozen, r1_penalty, smooth_noise
from dancegen.motion import SMPL_JOINT_NAMES
from dancegen.training.lightning import TrainingModule

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], context=4, music_window=[6, -4], noise_dim=4,
            hidden=32, layers=2, rollout=6, judge_context=3, disc_channels=8, scales=3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> GANModel:
    torch.manual_seed(0)
    return GANModel(**{**TINY, **kw}).eval()


def batch_from(model: GANModel, rot6d: np.ndarray, fact35: np.ndarray, starts) -> dict:
    """`WindowDataset`-style samples of one sequence: each window at its offset from a start frame."""
    inputs, outputs = model.windows()
    (length, offset), = outputs.values()
    (length_f, offset_f), = inputs.values()
    return {"inputs": {"fact35": torch.from_numpy(np.stack([fact35[s + offset_f:s + offset_f + length_f] for s in starts]))},
            "outputs": {"rot6d": torch.from_numpy(np.stack([rot6d[s + offset:s + offset + length] for s in starts]))},
            "style": ["waltz"] * len(starts)}


def synthetic_batch(model: GANModel, n: int = 8) -> dict:
    rot6d = motion_to_rot6d(synthetic_motion(0, 120))
    fact35 = np.random.default_rng(0).normal(size=(120, 35)).astype(np.float32)
    return batch_from(model, rot6d, fact35, range(30, 30 + 6 * n, 6))


def test_shapes_of_generator_discriminator_and_training_windows():
    model = tiny()
    past, known = torch.randn(5, 7, 4, 148), torch.ones(5, 7, 4, dtype=torch.bool)
    assert model.generator(past, known, torch.randn(5, 7, 6, 35), torch.randn(5, 7, 4)).shape == (5, 7, 148)
    judged = model.discriminator(torch.randn(2, 16, 148), torch.randn(2, 16, 35))
    assert [scores.shape for scores, _ in judged] == [(2, 8), (2, 4), (2, 2)]  # 16, 8, 4 frames, strided by 2
    assert [f.shape[1] for f in judged[0][1]] == [8, 16, 16]
    inputs, outputs = model.windows()
    # music from frame -4 (the first window's and the judged frames' first) to 6 (the last step's window:
    # frames 5 - 4 .. 5 + 1); rot6d from a frame before the context to the rollout's last
    assert inputs == {"fact35": (11, -4)} and outputs == {"rot6d": (1 + 4 + 6, -5)}
    loss, terms = model.train().loss(synthetic_batch(model))
    assert loss.ndim == 0 and set(terms) == {"l1", "loss_d", "d_real", "d_fake", "r1", "loss_g", "feature_matching"}


def test_smooth_noise_is_unit_gaussian_and_correlated_as_asked():
    z = smooth_noise((4000, 2, 3), 0.9, torch.Generator().manual_seed(0))
    assert abs(float(z.std()) - 1.0) < 0.05
    correlation = float((z[:, 1:] * z[:, :-1]).mean())
    assert abs(correlation - 0.9) < 0.05
    again = smooth_noise((4000, 2, 3), 0.9, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


def test_r1_is_non_negative_and_zero_where_the_discriminator_is_flat():
    torch.manual_seed(0)
    disc = Discriminator(music_dim=35, channels=8, scales=2)
    poses, music_ = torch.randn(3, 12, 148), torch.randn(3, 12, 35)
    penalty = r1_penalty(disc, poses, music_, gamma=1.0)
    assert penalty > 0
    assert torch.isclose(r1_penalty(disc, poses, music_, gamma=4.0), 4 * penalty)
    for judge in disc.judges:  # scores no longer depend on the input
        torch.nn.init.zeros_(judge[-1].weight)
    assert r1_penalty(disc, poses, music_, gamma=1.0) == 0.0
    # the penalty trains the discriminator: it has a gradient
    torch.manual_seed(1)
    disc = Discriminator(music_dim=35, channels=8, scales=2)
    r1_penalty(disc, poses, music_, gamma=1.0).backward()
    assert all(p.grad is not None for p in disc.judges[0][0].parameters())


def test_frozen_blocks_gradients_and_restores_the_flags():
    layer = torch.nn.Linear(3, 3)
    layer.bias.requires_grad_(False)
    x = torch.randn(2, 3, requires_grad=True)
    with frozen(layer):
        layer(x).sum().backward()
    assert layer.weight.grad is None and x.grad is not None
    assert layer.weight.requires_grad and not layer.bias.requires_grad


def test_each_network_gets_only_its_own_losses_gradients():
    """The sum that `loss` returns is two losses: the discriminator's reaches only its parameters, the
    generator's (through the frozen discriminator) only the generator's."""
    model = tiny().train()
    for_discriminator, for_generator, _ = model.losses(synthetic_batch(model), torch.Generator().manual_seed(0))
    parts = {"generator": list(model.generator.parameters()), "discriminator": list(model.discriminator.parameters())}
    for loss, own, other in ((for_discriminator, "discriminator", "generator"),
                             (for_generator, "generator", "discriminator")):
        grads = torch.autograd.grad(loss, parts[own] + parts[other], retain_graph=True, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads[:len(parts[own])]), own
        assert all(g is None or not g.any() for g in grads[len(parts[own]):]), other


def test_a_few_steps_change_both_networks_and_keep_losses_finite():
    model = tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.Adam([{"params": g["params"], "betas": g["betas"]} for g in model.optimiser_groups()],
                                 lr=1e-3)
    model.train()
    batch = synthetic_batch(model)
    for i in range(4):
        loss, terms = model.loss(batch, generator=torch.Generator().manual_seed(i))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values())
        assert terms["r1"] >= 0 and terms["loss_d"] >= 0 and terms["loss_g"] >= 0
    for part in ("generator", "discriminator"):
        moved = [n for n, p in model.named_parameters() if n.startswith(part) and not torch.equal(p, before[n])]
        assert len(moved) == sum(1 for n, _ in model.named_parameters() if n.startswith(part)), part


def test_optimiser_groups_reach_the_trainer_with_their_settings():
    model = tiny(disc_lr_scale=0.5, betas=[0.0, 0.9])
    optimiser = TrainingModule(model, lr=1e-3, weight_decay=0.0).configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in optimiser.param_groups}
    assert set(groups) == {"generator", "discriminator"}
    assert groups["generator"]["initial_lr"] == 1e-3 and groups["discriminator"]["initial_lr"] == 5e-4  # before warm-up
    assert groups["discriminator"]["betas"] == (0.0, 0.9) and "lr_scale" not in groups["discriminator"]
    assert sum(len(g["params"]) for g in optimiser.param_groups) == len(list(model.parameters()))


def test_generate_length_fps_skeleton_and_long_songs():
    model = tiny()
    for frames, fps in ((3, 25.0), (77, 25.0), (400, 25.0), (90, 30.0)):
        motion = model.generate(music(frames, fps=fps), length=frames, seed=0)
        assert (motion.num_frames, motion.fps, motion.skeleton.names) == (frames, fps, SMPL_JOINT_NAMES)
        assert np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()


def test_each_step_sees_windows_of_one_size_however_long_the_song(monkeypatch):
    model = tiny()
    shapes = []
    step = model.generator.forward

    def recording(past, known, window, noise):
        shapes.append((tuple(past.shape), tuple(known.shape), tuple(window.shape), tuple(noise.shape)))
        return step(past, known, window, noise)

    monkeypatch.setattr(model.generator, "forward", recording)
    model.generate(music(401), seed=0)
    assert len(shapes) == 401 and all(s == ((4, 148), (4,), (6, 35), (4,)) for s in shapes)


def test_seed_decides_the_dance():
    model = tiny()
    train_steps(model, synthetic_batch(model), 2, 1e-3)
    a, b, c = (model.generate(music(77), seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not np.allclose(a.rotations, c.rotations, atol=1e-4)
    cold = [model.generate(music(77), seed=s, temperature=0.0) for s in (0, 1)]
    assert np.array_equal(cold[0].rotations, cold[1].rotations)  # no noise: the seed no longer matters


def test_save_load_round_trip(tmp_path: Path):
    model = tiny()
    train_steps(model, synthetic_batch(model), 2, 1e-3)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is GANModel and loaded.config == model.config
    a, b = model.generate(music(77), seed=3), loaded.generate(music(77), seed=3)
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)


def test_seed_motion_is_continued(monkeypatch):
    model = tiny()
    model.motion_std[1:4] = 0.01  # root steps of about a centimetre and small turns, as in real data
    seed_motion = synthetic_motion(0, 40)
    seed_motion.root_translation[:] += [3.0, 0.0, -2.0]
    pasts, step = [], model.generator.forward
    monkeypatch.setattr(model.generator, "forward", lambda past, *rest: pasts.append(past.clone()) or step(past, *rest))
    _, gap = continuation_gap(model, seed_motion)
    assert gap < 0.5  # starts where the seed ends, not at the origin
    # the first step's past is the seed's last `context` poses, all known; the next steps shift in their own
    rot6d = torch.from_numpy(motion_to_rot6d(seed_motion.resample(model.fps)))
    assert torch.allclose(pasts[0], model.normalise(rot6d[-(model.context + 1):]), atol=1e-5)
    assert torch.equal(pasts[1][:-1], pasts[0][1:])


def test_default_config_builds():
    config = yaml.safe_load((REPO / "configs" / "gan.yaml").read_text())
    model = _MODELS[config["model"].pop("family")](**config["model"])
    assert model.name == "gan" and 0.3e6 < model.num_parameters < 5e6
    assert config["training"]["threads"] == 1 and config["training"]["max_minutes"] <= 25


def test_train_command_logs_both_networks(synthetic: Path, tmp_path: Path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dancegen.cli import main

    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    config = {"data": {"path": str(tmp_path / "prepared"), "source": f"synthetic:{synthetic}"},
              "model": {"family": "gan", **{k: v for k, v in TINY.items() if k not in ("fps", "music_dims")}},
              "training": {"batch_size": 4, "train_stride": 8, "val_stride": 8, "warmup_steps": 2, "val_every": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "run"), "--max-steps", "4", "-q"]) == 0
    events = EventAccumulator(str(tmp_path / "run" / "logs" / "version_0"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_d", "train/loss_g", "train/r1", "train/d_real", "train/d_fake", "train/feature_matching",
            "train/l1", "val/l1", "lr-AdamW/generator", "lr-AdamW/discriminator"} <= scalars
    assert len(events.Scalars("train/loss_d")) >= 1
    model = load_model(tmp_path / "run" / "best")
    assert isinstance(model, GANModel) and model.fps == 30.0


# ---- on real data -------------------------------------------------------------------------------


def test_a_few_steps_on_real_windows_lower_the_l1(real_dance):
    rot6d, fact35, _ = real_dance
    model = tiny()
    normalise_like(model, rot6d, fact35)
    batch = batch_from(model, rot6d, fact35, range(30, 1000 - 60, 20))
    before = fixed_loss(model, batch) / 4  # eval mode: the teacher-forced L1
    train_steps(model, batch, 30, 3e-3)
    after = fixed_loss(model, batch) / 4
    assert after < 0.8 * before, (before, after)
