"""`dancegen train CONFIG.yaml`: train a model family from a YAML config into a saved-model folder.

The config has four sections (see configs/diffusion.yaml):

    data:     {path: data/dwm, source: "dance-with-melody:../shared/data/dance_with_melody",
               extra: [{path, source}, ...]}  # optional: more prepared datasets, for a family
                                              # with `with_extra_data` (e.g. masked: motion only)
    model:    {family: diffusion, ...the family's keyword arguments}
    training: {seed, batch_size, train_stride, val_stride, max_steps, max_minutes, lr, ...}
    out:      out/diffusion

Relative paths are relative to the current directory. `training.init: FOLDER` starts from a saved
model's weights, `training.run_stages: [ac]` runs only the named stages of a multi-stage family
(e.g. fine-tune a trained bailando with its actor-critic stage). The data are prepared from `source` when
`path` holds no prepared dataset. OUT receives logs/ (TensorBoard), best/ (the EMA model with the
lowest validation loss) and last/ (the EMA model at the end), each a folder `load_model` reads, and
checkpoints/STAGE/ (every `checkpoint_every` steps, default `val_every`) for `--resume`. A stage's
`select` says which of its weights count: `best` (the lowest validation loss, kept in
checkpoints/STAGE/best) starts the next stage, where by default the next stage starts from the
stage's last weights; `last` makes best/ the stage's last weights (for a stage whose validation
loss does not measure what it trains for, like bailando's actor-critic).

`accelerator`, `devices`, `num_nodes`, `strategy` and `precision` go to Lightning's Trainer (e.g. gpu, 4,
1, ddp, bf16-mixed); `batch_size` is per process. docs/training.md has the options and the launches.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

TRAINING_DEFAULTS = {"seed": 0, "batch_size": 64, "train_stride": 4, "val_stride": 50, "max_steps": 10000,
                     "max_minutes": None, "lr": 4e-4, "weight_decay": 0.01, "warmup_steps": 200,
                     "ema_decay": 0.999, "val_every": 250, "grad_clip": 1.0, "threads": None, "stages": None,
                     "init": None, "run_stages": None, "checkpoint_every": None, "select": None,
                     "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}


def _merged(base: dict, changes: dict) -> dict:
    """`base` updated by `changes`, mappings merged key by key (e.g. one stage's options)."""
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config(path: str | os.PathLike, _seen: tuple = ()) -> dict[str, Any]:
    """A training config; `extends: OTHER.yaml` (relative to this file) starts from another config and
    changes only what this one names (a variant of a recipe)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(path, f"cannot read the config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise UserError(path, f"not valid YAML ({e})") from None
    if isinstance(config, dict) and config.get("extends"):
        base = path.parent / str(config.pop("extends"))
        if base.resolve() in _seen:
            raise UserError(path, f"`extends` goes round in a circle through {base}")
        config = _merged(read_config(base, (*_seen, path.resolve())), config)
    if not isinstance(config, dict) or "model" not in config or "data" not in config:
        raise UserError(path, "a training config needs `data` and `model` sections")
    unknown = set(config.get("training") or {}) - set(TRAINING_DEFAULTS)
    if unknown:
        raise UserError(path, f"unknown training options: {', '.join(sorted(unknown))}")
    return config


def prepared_data(data: dict, progress: bool = True):
    """The prepared dataset at data["path"], prepared from data["source"] (KIND:PATH) when absent."""
    from ..data import PreparedDataset
    from ..data.prepare import prepare

    path = Path(data["path"])
    if not (path / "dataset.json").is_file():
        if not data.get("source"):
            raise UserError(path, "no prepared dataset here, and the config names no `source` to prepare it from")
        kind, _, src = data["source"].partition(":")
        prepare(kind, src, path, progress=progress)
    return PreparedDataset(path)


def _check_select(config_path, where: str, options: dict) -> None:
    if options.get("select") not in (None, "best", "last"):
        raise UserError(config_path, f"{where}.select takes best or last, not {options['select']!r}")


def _stages(config_path, model, options: dict, caps: dict) -> list[tuple[str | None, dict]]:
    """[(stage, options)]: one unnamed stage for a single-stage family; for a family with `stages`
    (e.g. bailando's vqvae then gpt), each stage's options are the training options updated by
    `training.stages.NAME`, then by `caps` (--max-minutes or --max-steps given on the command line)."""
    _check_select(config_path, "training", options)
    names = getattr(model, "stages", None)
    if not names:
        return [(None, {**options, **caps})]
    given = options.get("stages") or {}
    unknown = set(given) - set(names)
    if unknown or not all(isinstance(v, dict) for v in given.values()):
        raise UserError(config_path, f"training.stages takes {', '.join(names)}, each a mapping of training options")
    for name, stage in given.items():
        wrong = set(stage) - (set(TRAINING_DEFAULTS) - {"stages"})
        if wrong:
            raise UserError(config_path, f"unknown training options in training.stages.{name}: {', '.join(sorted(wrong))}")
        _check_select(config_path, f"training.stages.{name}", stage)
    run = options.get("run_stages") or list(names)
    if not isinstance(run, list) or set(run) - set(names):
        raise UserError(config_path, f"training.run_stages takes a list of {', '.join(names)}")
    return [(name, {**options, **(given.get(name) or {}), **caps}) for name in names if name in run]


def init_weights(model, folder: str | os.PathLike) -> None:
    """Start from a saved model's weights (`training.init`): every tensor of the saved model must fit;
    the model's tensors it lacks (e.g. a head only a later stage trains) keep their new values."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / "model.safetensors"
    try:
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    except (OSError, SafetensorError, RuntimeError) as e:
        raise UserError(path, f"cannot start from these weights ({str(e).splitlines()[0]})") from None
    if unexpected:
        raise UserError(path, f"weights this model does not have: {', '.join(unexpected[:5])}")
    if missing:
        print(f"starting from {folder}; newly initialised: {', '.join(sorted({k.split('.')[0] for k in missing}))}")


def _trainer(out: Path, stage: str | None, options: dict, callbacks: list, progress: bool, resumed_step: int | None):
    """The Lightning Trainer of one stage: devices, nodes, strategy and precision from the options."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from .checkpoints import AtomicCheckpointIO, Checkpoints

    minutes, every = options["max_minutes"], options["checkpoint_every"] or options["val_every"]
    # resumed: TensorBoard drops what the killed run logged after the checkpoint, so the curve continues
    logger = TensorBoardLogger(out, name="logs", version=stage, default_hp_metric=False,
                               **({"purge_step": resumed_step + 1} if resumed_step is not None else {}))
    return L.Trainer(
        accelerator=options["accelerator"], devices=options["devices"], num_nodes=options["num_nodes"],
        strategy=options["strategy"], precision=options["precision"], max_steps=options["max_steps"],
        max_time={"minutes": minutes} if minutes else None, logger=logger, plugins=[AtomicCheckpointIO()],
        callbacks=[*callbacks, Checkpoints(out / "checkpoints" / (stage or "train"), every),
                   LearningRateMonitor("step")] + ([TQDMProgressBar(refresh_rate=10)] if progress else []),
        val_check_interval=min(options["val_every"], options["max_steps"]),
        check_val_every_n_epoch=None, num_sanity_val_steps=0, use_distributed_sampler=False,
        gradient_clip_val=options["grad_clip"], log_every_n_steps=min(10, every), enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=progress,
        deterministic=True if options["accelerator"] == "cpu" else "warn",
    )


def train(config_path: str | os.PathLike, out: str | os.PathLike | None = None, *,
          max_minutes: float | None = None, max_steps: int | None = None, progress: bool = True,
          resume: bool = False) -> Path:
    """Train the model the config describes; returns OUT (holding best/, last/, logs/ and checkpoints/).
    `resume` continues from OUT/checkpoints: finished stages are loaded, the current one continues from
    its newest good checkpoint."""
    import lightning as L
    import torch

    from ..models.base import _MODELS, style_skeletons
    from .checkpoints import newest_good
    from .lightning import LogSamples, SaveModel, TrainingModule, WindowDataModule

    config = read_config(config_path)
    options = {**TRAINING_DEFAULTS, **(config.get("training") or {})}
    caps = {k: v for k, v in (("max_minutes", max_minutes), ("max_steps", max_steps)) if v is not None}
    out = Path(out or config.get("out") or Path("runs") / Path(config_path).stem)
    if not resume and any((out / "checkpoints").glob("*/*.ckpt")):
        raise UserError(out / "checkpoints", "holds an earlier run's checkpoints: add --resume to continue it, "
                                             "or train into another folder")
    model_config = dict(config["model"])
    family = model_config.pop("family", None)
    if family not in _MODELS or not hasattr(_MODELS[family], "for_data"):
        raise UserError(config_path, f"unknown or untrainable model family {family!r}")
    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))

    if int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1) > 1 and not (Path(config["data"]["path"]) / "dataset.json").is_file():
        raise UserError(config["data"]["path"], "no prepared dataset here: run `dancegen prepare` before "
                                                "starting several processes (torchrun, srun), so they do not all prepare it")
    data = prepared_data(config["data"], progress)
    L.seed_everything(options["seed"], workers=True, verbose=False)
    model = _MODELS[family].for_data(data, **model_config)
    model.trained_styles = tuple(sorted({s for n in data.split("train") if (s := data.sequences[n].get("style"))}))
    model.style_skeletons = style_skeletons(data)
    if options["init"]:
        init_weights(model, options["init"])
    inputs, outputs = model.windows()
    datamodule = WindowDataModule(data.root, inputs, outputs, batch_size=options["batch_size"],
                                  train_stride=options["train_stride"], val_stride=options["val_stride"],
                                  seed=options["seed"])
    extra = [prepared_data(d, progress) for d in config["data"].get("extra") or []]
    if extra:
        if not hasattr(model, "with_extra_data"):
            raise UserError(config_path, f"the {family} family cannot train on data.extra")
        datamodule = model.with_extra_data(datamodule, extra)
    stages = _stages(config_path, model, options, caps)
    samples = LogSamples(data)
    started, resumed = time.time(), False
    for stage, stage_options in stages:
        if stage is not None:
            model.set_stage(stage)
            if hasattr(model, "before_stage"):
                model.before_stage(stage, data)  # e.g. bailando measures what its actor-critic reward needs
        module = TrainingModule(model, lr=stage_options["lr"], weight_decay=stage_options["weight_decay"],
                                warmup_steps=stage_options["warmup_steps"], max_steps=stage_options["max_steps"],
                                ema_decay=stage_options["ema_decay"])
        folder = out / "checkpoints" / (stage or "train")
        datamodule.batch_size = stage_options["batch_size"]  # a stage may set its own (bailando's ac: 16)
        path, state = (newest_good(folder) if resume else None) or (None, None)
        resumed = resumed or path is not None
        if path and path.name == "final.ckpt":  # finished before: its weights, no training
            module.load_state_dict(state["state_dict"])
            if progress:
                print(f"stage {stage or 'train'}: finished earlier ({path})")
        else:
            step, state = state and state["global_step"], None  # (Lightning reads the checkpoint itself)
            if progress:
                print((f"stage {stage}: " if stage else "") + f"up to {stage_options['max_steps']} steps"
                      + (f" or {stage_options['max_minutes']:.0f} min" if stage_options["max_minutes"] else "")
                      + (f", resuming from {path} (step {step})" if path else ""))
            saver = SaveModel(out, folder / "best" if stage_options["select"] == "best" else None)
            trainer = _trainer(out, stage, stage_options, [saver, samples], progress, step)
            trainer.logger.log_hyperparams({"family": family, "stage": stage or "", **model.config,
                                            **{k: v for k, v in stage_options.items() if k != "stages"}})
            trainer.fit(module, datamodule=datamodule, ckpt_path=path, weights_only=True)
            trainer.save_checkpoint(folder / "final.ckpt", weights_only=False)  # done: a resumed run skips it
        model.load_state_dict(module.ema.state_dict())  # the next stage starts from the averaged weights
        if stage_options["select"] == "best" and (folder / "best").is_dir():
            init_weights(model, folder / "best")  # ... or from the stage's best validation, when it says so
        elif stage_options["select"] == "last" and int(os.environ.get("RANK", 0)) == 0:
            module.ema.save(out / "best")
        if stage is not None and hasattr(model, "after_stage"):
            model.after_stage(stage, data)  # e.g. bailando counts each style's codes once its codebooks exist
    if progress and int(os.environ.get("RANK", 0)) == 0:
        print(f"trained {family} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) in "
              f"{(time.time() - started) / 60:.1f} min{' since resuming' if resumed else ''}; saved {out / 'best'} and "
              f"{out / 'last'}; logs in {out / 'logs'}; resumable from {out / 'checkpoints'}")
    return out
