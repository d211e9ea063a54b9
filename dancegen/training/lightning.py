"""Lightning pieces shared by every model family: the training module, the data module, saving.

A family's model is an `nn.Module` with `loss(batch, generator=None) -> loss or (loss, {name: value})`,
`windows() -> (inputs, outputs)` in `WindowDataset` terms and `save(folder)`. Training keeps an
exponential moving average of the weights; validation and the saved model use the average, and
`LogSamples` puts a dance of the averaged model into TensorBoard at every validation. A family with
`optimiser_groups()` (e.g. a GAN: generator and discriminator) gets a parameter group each, with its own
Adam settings and gradient clipping; its `loss` sends each network only its own gradients.

Under DDP every process keeps the same average (its weights are the same after each step: DDP averages
the gradients); the EMA is a submodule, so it is in every training checkpoint. Files are written by
rank 0 only (`trainer.is_global_zero`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import WindowDataset
from ..data.prepared import SPLITS


class StyledWindows(Dataset):
    """`WindowDataset` samples with the sequence's style label (a string, "" when unknown)."""

    def __init__(self, root: Path, split: str, inputs: dict, outputs: dict, stride: int):
        self.windows = WindowDataset(root, split, inputs, outputs, stride=stride, normalise=False)
        self.styles = {n: s.get("style") or "" for n, s in self.windows.data.sequences.items()}

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        return {**self.windows[i], "style": self.styles[self.windows.index[i][0]]}


class MotionOnlyWindows(Dataset):
    """Windows of a prepared split that has motion but no song, shaped like `StyledWindows` samples: each
    music input of `music` ({feature: (frames, dim)}) is zeros, for a stage that does not read it (or
    that a family tells apart, like masked's `has_music`)."""

    def __init__(self, root: Path, split: str, music: dict, outputs: dict, stride: int):
        self.windows = WindowDataset(root, split, {}, outputs, stride=stride, normalise=False)
        self.styles = {n: s.get("style") or "" for n, s in self.windows.data.sequences.items()}
        self.music = {f: torch.zeros(frames, dim) for f, (frames, dim) in music.items()}

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": dict(self.music), "outputs": self.windows[i]["outputs"],
                "style": self.styles[self.windows.index[i][0]]}


def motion_only_windows(extra: list, music: dict, outputs: dict, stride: int) -> list[MotionOnlyWindows]:
    """`MotionOnlyWindows` of every split of each prepared dataset in `extra` (motion-only data has no
    held-out use: all of it trains)."""
    return [MotionOnlyWindows(d.root, split, music, outputs, stride)
            for d in extra for split in SPLITS if d.split(split)]


class EpochSampler(DistributedSampler):
    """`DistributedSampler` (one shuffle per epoch from the seed, dealt out to the ranks) that can start
    its next epoch `skip` windows in: where a resumed run left off."""

    skip = 0

    def __iter__(self):
        indices, self.skip = list(super().__iter__())[self.skip:], 0
        return iter(indices)


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the epoch is part of a Lightning checkpoint (Lightning saves a loader's
    `state_dict`): a resumed run skips the batches the epoch had trained on, as an uninterrupted run would."""

    def __init__(self, *args, trainer: L.Trainer | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainer = trainer

    def state_dict(self) -> dict:  # one optimiser step a batch: the steps since the epoch began
        return {"batches_done": self.trainer.global_step % len(self) if self.trainer else 0}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.skip = int(state["batches_done"]) * self.batch_size


class WindowDataModule(L.LightningDataModule):
    def __init__(self, root: str | Path, inputs: dict, outputs: dict, *, batch_size: int = 64,
                 train_stride: int = 4, val_stride: int = 50, seed: int = 0):
        super().__init__()
        self.root, self.inputs, self.outputs = Path(root), inputs, outputs
        self.batch_size, self.train_stride, self.val_stride, self.seed = batch_size, train_stride, val_stride, seed

    def setup(self, stage: str | None = None) -> None:
        self.train_set = StyledWindows(self.root, "train", self.inputs, self.outputs, self.train_stride)
        self.val_set = StyledWindows(self.root, "val", self.inputs, self.outputs, self.val_stride)

    def train_dataloader(self) -> DataLoader:
        """`batch_size` windows per process. One shuffled order per epoch from `seed`, dealt out to the
        processes (rank r takes every world-size-th window from r), so that the global batch of a run on
        N processes is the batch of a one-process run with N × `batch_size`."""
        trainer = self.trainer
        sampler = EpochSampler(self.train_set, num_replicas=trainer.world_size if trainer else 1,
                               rank=trainer.global_rank if trainer else 0, shuffle=True, seed=self.seed,
                               drop_last=True)  # Lightning calls set_epoch at every epoch
        return ResumableLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                               trainer=trainer)

    def val_dataloader(self) -> DataLoader:
        """Every process validates on all of the (small) validation set: the same loss on every rank."""
        return DataLoader(self.val_set, batch_size=self.batch_size)


class TrainingModule(L.LightningModule):
    """AdamW with linear warm-up and cosine decay over `max_steps`; EMA of the weights."""

    def __init__(self, model: torch.nn.Module, *, lr: float = 4e-4, weight_decay: float = 0.01,
                 warmup_steps: int = 200, max_steps: int = 10000, ema_decay: float = 0.999):
        super().__init__()
        self.model = model
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.lr, self.weight_decay, self.warmup_steps, self.max_steps = lr, weight_decay, warmup_steps, max_steps
        self.ema_decay = ema_decay

    @staticmethod
    def _split(out) -> tuple[torch.Tensor, dict]:
        return out if isinstance(out, tuple) else (out, {})

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, terms = self._split(self.model.loss(batch))
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        """The step, then the average: before any callback's `on_train_batch_end`, so that a checkpoint
        written there holds the average of this step (callbacks' hooks run before the module's)."""
        super().optimizer_step(*args, **kwargs)
        step = self.global_step + 1  # Lightning counts this step once the hook returns
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1 - decay)
            for e, b in zip(self.ema.buffers(), self.model.buffers()):  # e.g. a codebook updated in place
                e.copy_(b)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.ema.eval()  # Lightning puts every submodule back in training mode after validation
        generator = torch.Generator().manual_seed(batch_idx)  # the same noise at every validation
        loss, terms = self._split(self.ema.loss(batch, generator=generator))
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["style"]), sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, batch_size=len(batch["style"]), sync_dist=True)

    def configure_optimizers(self):
        if hasattr(self.model, "optimiser_groups"):
            optimizer = torch.optim.AdamW(self._own_groups(), lr=self.lr, weight_decay=self.weight_decay)
        else:
            trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            decay = [p for n, p in trainable if p.ndim >= 2 and "position" not in n]
            rest = [p for n, p in trainable if not (p.ndim >= 2 and "position" not in n)]
            optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                           {"params": rest, "weight_decay": 0.0}], lr=self.lr)

        def schedule(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _own_groups(self) -> list[dict]:
        """A family's own parameter groups (`model.optimiser_groups()`: a list of AdamW param groups, each
        with a `name`, its own settings, e.g. `betas`, and `lr_scale` times the training `lr`; e.g. a GAN's
        generator and discriminator). AdamW keeps its state per parameter, so a group is an optimiser of its
        own in all but name, and one optimiser keeps one step a batch for the schedule, EMA and checkpoints."""
        return [{**{k: v for k, v in group.items() if k != "lr_scale"}, "lr": self.lr * group.get("lr_scale", 1.0),
                 "params": [p for p in group["params"] if p.requires_grad]} for group in self.model.optimiser_groups()]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Each of a family's own parameter groups (`optimiser_groups`) is clipped on its own norm: one network's
        large gradients (a GAN's discriminator) do not shrink another's step. Other families: Lightning's clipping."""
        if not hasattr(self.model, "optimiser_groups") or not gradient_clip_val:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for group in optimizer.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], gradient_clip_val)


class SaveModel(L.Callback):
    """Saves the EMA model to OUT/best (and to `stage_best`, the stage's own copy, when given) whenever
    the validation loss improves, and to OUT/last at the end; from rank 0 only. The best loss so far is
    part of a training checkpoint (`state_dict`)."""

    def __init__(self, out: Path, stage_best: Path | None = None):
        self.out, self.stage_best, self.best = Path(out), stage_best, math.inf

    def on_validation_end(self, trainer: L.Trainer, module: TrainingModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        if float(loss) < self.best:
            self.best = float(loss)
            if trainer.is_global_zero:
                for folder in (self.out / "best", self.stage_best):
                    if folder is not None:
                        module.ema.save(folder)

    def on_train_end(self, trainer: L.Trainer, module: TrainingModule) -> None:
        if trainer.is_global_zero:
            module.ema.save(self.out / "last")

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])


class LogSamples(L.Callback):
    """At every validation, the averaged model dances the first `seconds` of a validation song (seed 0,
    the song's style); `frames` evenly spaced frames of it go to TensorBoard as one image strip
    (`samples/dance`), and its mean joint speed as `samples/joint_speed` (m/s: a frozen or flailing
    model shows there before any benchmark)."""

    def __init__(self, data, split: str = "val", seconds: float = 8.0, frames: int = 8,
                 size: tuple[int, int] = (160, 240)):
        from ..models import Music

        names = data.split(split) or data.split("train")
        meta = data.sequences[names[0]]
        length = min(int(seconds * data.fps), meta["frames"])
        self.music = Music({f: np.asarray(data.array(names[0], f)[:length]) for f in data.features_of("music")},
                           data.fps, style=meta.get("style"))
        self.length, self.frames, self.size = length, frames, size

    def on_validation_end(self, trainer: L.Trainer, module: TrainingModule) -> None:
        from ..render.figure import Figure
        from ..render.frames import FrameDrawer

        if trainer.sanity_checking or trainer.logger is None or not trainer.is_global_zero \
                or not hasattr(module.ema, "generate"):
            return
        motion = module.ema.generate(self.music, length=self.length, seed=0)
        positions = motion.positions()
        drawer = FrameDrawer(positions, Figure.of(motion.skeleton), motion.fps, self.size)
        strip = np.concatenate([drawer.rgb(int(i)) for i in np.linspace(0, len(positions) - 1, self.frames)], axis=1)
        speed = float(np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean() * motion.fps)
        trainer.logger.experiment.add_image("samples/dance", strip, trainer.global_step, dataformats="HWC")
        trainer.logger.experiment.add_scalar("samples/joint_speed", speed, trainer.global_step)
