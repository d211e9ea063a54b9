"""`dancegen train` end to end on the small synthetic dataset: a two-stage family (bailando)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dancegen.cli import main
from dancegen.data.prepared import PreparedDataset
from dancegen.models import Music, load_model
from dancegen.models.bailando import BailandoModel

TINY = dict(family="bailando", down=4, codes=16, code_dim=8, channels=16, context=4, d_model=32, layers=1,
            heads=2, ff=64, music_channels=8, vq_window=16, style_prior=1.0)


def write_config(path: Path, data: Path, source: Path, **training) -> Path:
    config = {"data": {"path": str(data), "source": f"synthetic:{source}"}, "model": TINY,
              "training": {"batch_size": 4, "train_stride": 8, "val_stride": 8, "warmup_steps": 2, "val_every": 3,
                           **training}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_stage_training_writes_loadable_models_and_logs(synthetic: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    config = write_config(tmp_path / "c.yaml", tmp_path / "prepared", synthetic,
                          stages={"vqvae": {"max_steps": 6, "lr": 1e-3, "ema_decay": 0.0},
                                  "gpt": {"max_steps": 4}})
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "-q"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for stage in ("vqvae", "gpt"):
        events = EventAccumulator(str(tmp_path / "run" / "logs" / stage))
        events.Reload()
        assert "samples/dance" in events.Tags()["images"] and "samples/joint_speed" in events.Tags()["scalars"]
        image = events.Images("samples/dance")[-1]
        assert (image.width, image.height) == (8 * 160, 240)
    prepared = PreparedDataset(tmp_path / "prepared")
    train_styles = {prepared.sequences[n]["style"] for n in prepared.split("train")}
    for folder in ("best", "last"):
        model = load_model(tmp_path / "run" / folder)
        assert isinstance(model, BailandoModel) and model.context == 4
        assert model.trained_styles == tuple(sorted(train_styles))  # recorded by the trainer
        assert sorted(model.style_skeletons) == sorted(train_styles)  # each style's median body, recorded too
        for style, offsets in model.style_skeletons.items():
            bodies = [prepared.motion(n).skeleton.offsets for n in prepared.split("train")
                      if prepared.sequences[n]["style"] == style]
            assert np.allclose(offsets, np.median(np.stack(bodies), 0), atol=1e-6)
    # the VQ-VAE stage's codebook reached the saved model (the average of the weights shares its buffers)
    assert bool(model.upper.quantizer.initialised)
    # after the VQ-VAE stage the training dances' codes were counted per style, for `style_prior`
    assert float(model.style_codes.sum()) > 0 and float(model.style_codes[0].sum()) == 0
    music = Music({"fact35": np.zeros((40, 35), np.float32)}, model.fps)
    assert model.generate(music, seed=0).num_frames == 40

    # a variant config fine-tunes the saved model with the actor-critic stage only
    variant = tmp_path / "ac.yaml"
    variant.write_text(yaml.safe_dump({"extends": "c.yaml", "model": {"actor_critic": True},
                                       "training": {"init": str(tmp_path / "run" / "best"), "run_stages": ["ac"],
                                                    "stages": {"ac": {"max_steps": 2}}}}))
    assert main(["train", str(variant), "-o", str(tmp_path / "ac"), "-q"]) == 0
    tuned = load_model(tmp_path / "ac" / "last")
    assert tuned.actor_critic and tuned.context == 4 and float(tuned.still_speed) > 0
    assert torch.equal(tuned.upper.quantizer.embedding, model.upper.quantizer.embedding)
    assert not torch.equal(tuned.gpt.up_head.weight, model.gpt.up_head.weight)
    assert (tmp_path / "ac" / "logs" / "ac").is_dir() and not (tmp_path / "ac" / "logs" / "vqvae").exists()


def test_extends_merges_configs_and_refuses_a_circle(tmp_path: Path):
    from dancegen.errors import UserError
    from dancegen.training.train import read_config

    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"data": {"path": "d"}, "model": {"family": "bailando", "codes": 8},
                                                     "training": {"stages": {"gpt": {"lr": 1.0, "max_steps": 5}}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a.yaml", "model": {"codes": 16},
                                                     "training": {"stages": {"gpt": {"lr": 2.0}}}}))
    config = read_config(tmp_path / "b.yaml")
    assert config["model"] == {"family": "bailando", "codes": 16}
    assert config["training"]["stages"]["gpt"] == {"lr": 2.0, "max_steps": 5}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"extends": "b.yaml", "data": {}, "model": {}}))
    with pytest.raises(UserError, match="circle"):
        read_config(tmp_path / "b.yaml")


@pytest.mark.parametrize("stages, message", [
    ({"polish": {"max_steps": 1}}, "training.stages takes vqvae, gpt"),
    ({"vqvae": {"max_steps": 1}, "gpt": {"max_steps": 1}, "ac": {"max_steps": 1}}, "training.stages takes vqvae, gpt"),
    ({"gpt": {"max_step": 1}}, "unknown training options in training.stages.gpt: max_step"),
    ({"gpt": {"select": "first"}}, "training.stages.gpt.select takes best or last, not 'first'"),
])
def test_bad_stages_are_one_line_errors(synthetic: Path, tmp_path: Path, capsys, stages, message):
    config = write_config(tmp_path / "c.yaml", tmp_path / "prepared", synthetic, stages=stages)
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "c.yaml" in err and message in err and "\n" not in err


def test_select_hands_on_the_best_weights_and_can_save_the_last(synthetic: Path, tmp_path: Path, monkeypatch):
    """`select: best` starts the next stage from the stage's lowest validation loss; `select: last` makes
    best/ the stage's last weights (the actor-critic's validation loss rises as its policy moves)."""
    from safetensors.torch import load_file

    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    config = write_config(tmp_path / "c.yaml", tmp_path / "prepared", synthetic,
                          stages={"vqvae": {"max_steps": 9, "lr": 3e-2, "ema_decay": 0.0, "select": "best"},
                                  "gpt": {"max_steps": 3}, "ac": {"max_steps": 3, "select": "last"}})
    text = yaml.safe_load(config.read_text())
    text["model"] = {**TINY, "actor_critic": True}
    config.write_text(yaml.safe_dump(text))
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "-q"]) == 0
    run = tmp_path / "run"
    stage_best, best, last = (load_file(str(f / "model.safetensors"))
                              for f in (run / "checkpoints" / "vqvae" / "best", run / "best", run / "last"))
    encoder = [k for k in stage_best if k.startswith(("upper.", "lower."))]
    assert encoder and all(torch.equal(stage_best[k], last[k]) for k in encoder)  # frozen after the handoff
    assert all(torch.equal(best[k], last[k]) for k in last)
    bad = write_config(tmp_path / "bad.yaml", tmp_path / "prepared", synthetic, select="first")
    assert main(["train", str(bad), "-o", str(tmp_path / "bad"), "-q"]) == 2
