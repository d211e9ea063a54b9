"""Resumable training: checkpoints of the whole training state, written atomically, found again after a crash.

Each stage writes OUT/checkpoints/STAGE/step=NNNNNNNN.ckpt every `checkpoint_every` steps (the newest
two are kept) and final.ckpt when it ends. They are Lightning checkpoints (weights, the EMA copy, the
optimiser, the schedule, the loop counters and callback state) and are read with `weights_only=True`.

Lightning's own writer goes through an fsspec transaction whose temporary file sits in the system's
temp folder and is moved, so a kill can leave a stray file there and the move may be a copy across
file systems; `AtomicCheckpointIO` writes beside the target and renames (`dancegen.io.atomic_path`).
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from ..io import atomic_path

KEEP = 2
STEP_FILE = re.compile(r"step=(\d+)\.ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to a temporary name in the checkpoint's folder, renamed when complete."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class Checkpoints(L.Callback):
    """Every `every` optimiser steps, the training state to FOLDER/step=N.ckpt, keeping the newest `keep`.
    Every rank calls `trainer.save_checkpoint` (Lightning writes from rank 0 only); rank 0 prunes.

    The state is taken when step N's batch ends, but Lightning logs that batch's metrics, and runs any
    validation, after the hook. So the checkpoint is written under a temporary name and takes its own only
    once the loggers have flushed, when the next batch starts or training ends: a checkpoint on disk means
    everything logged before it is on disk too, and a resumed run (which drops what the killed run logged
    after its checkpoint) continues the curve without a gap. A kill in between leaves only the temporary
    file, which `newest_good` removes, and the run resumes from the checkpoint before."""

    def __init__(self, folder: Path, every: int, keep: int = KEEP):
        self.folder, self.every, self.keep, self.saved, self.pending = Path(folder), int(every), keep, None, None

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every or step == self.saved:  # (several batches can end on one step: accumulation)
            return
        self.saved = step
        pending = self.folder / f".step={step:08d}.ckpt.pending.tmp.ckpt"  # a name `newest_good` clears
        trainer.save_checkpoint(pending, weights_only=False)  # the whole state
        self.pending = pending  # (only once written: an exception while writing leaves nothing to name)

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        self._commit(trainer)

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        self._commit(trainer)

    def on_exception(self, trainer: L.Trainer, module, exception: BaseException) -> None:
        self._commit(trainer)  # (the pending state is whole; what was logged after it is flushed with it)

    def _commit(self, trainer: L.Trainer) -> None:
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        for logger in trainer.loggers:
            logger.save()  # (TensorBoard's writer otherwise flushes every two minutes)
        if trainer.is_global_zero:
            os.replace(pending, self.folder / f"step={self.saved:08d}.ckpt")
            for old in step_checkpoints(self.folder)[self.keep:]:
                old.unlink(missing_ok=True)


def step_checkpoints(folder: Path) -> list[Path]:
    """FOLDER's step=N.ckpt files, newest (highest step) first."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("step=*.ckpt") if (m := STEP_FILE.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's content without unpickling code; raises ValueError with a one-line reason."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no central directory
        raise ValueError("truncated or not a checkpoint: no complete zip archive")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails in many ways (zip, pickle, EOF); each means "not usable"
        if "Weights only load failed" in str(e):
            raise ValueError("holds objects other than tensors and plain data, refused unread") from None
        raise ValueError(str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__) from None
    if not isinstance(state, dict) or "state_dict" not in state or "global_step" not in state:
        raise ValueError("not a Lightning training checkpoint")
    return state


def newest_good(folder: Path) -> tuple[Path, dict] | None:
    """The newest readable checkpoint of a stage (final.ckpt first, then step=N.ckpt newest first) and its
    content. A damaged one gets a one-line message naming it and the next older one is tried; it stays
    until training writes a good checkpoint of that name or prunes it."""
    folder = Path(folder)
    if rank_zero_only.rank == 0:  # a write the kill interrupted (`atomic_path`'s temporary names)
        for stray in folder.glob(".*.ckpt.*.tmp.ckpt"):
            stray.unlink(missing_ok=True)
    candidates = ([folder / "final.ckpt"] if (folder / "final.ckpt").exists() else []) + step_checkpoints(folder)
    for path in candidates:
        try:
            return path, read_checkpoint(path)
        except ValueError as e:
            if rank_zero_only.rank == 0:
                print(f"{path}: damaged checkpoint ({e}); falling back to the previous one", file=sys.stderr)
    return None
