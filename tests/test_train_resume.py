"""Resumable training (issue 10): a run killed with SIGKILL resumes from its newest checkpoint and loses
nothing beyond it; a damaged newest checkpoint is named in one line and the previous one is used."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_train import write_config

from dancegen.cli import main
from dancegen.models import load_model
from dancegen.training.checkpoints import Checkpoints, newest_good, read_checkpoint, step_checkpoints
from dancegen.training.train import prepared_data

REPO = Path(__file__).resolve().parents[1]


def logged(run: Path, stage: str, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, value) of a TensorBoard scalar as TensorBoard shows it (a resumed run's purge applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs" / stage))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def leftovers(run: Path) -> list[Path]:
    """Files in checkpoints/ that are not a readable checkpoint: temporary names, damaged files."""
    bad = []
    for path in (run / "checkpoints").rglob("*"):
        if path.is_file():
            try:
                read_checkpoint(path)
            except ValueError:
                bad.append(path)
    return bad


@pytest.fixture()
def prepared(synthetic: Path, tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """The synthetic dataset prepared (a subprocess does not know the test-only `synthetic` kind)."""
    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    prepared_data({"path": str(tmp_path / "prepared"), "source": f"synthetic:{synthetic}"}, progress=False)
    return tmp_path / "prepared", synthetic


def test_a_killed_run_resumes_and_loses_nothing_beyond_its_last_checkpoint(prepared, tmp_path: Path):
    stages = {"vqvae": {"max_steps": 4, "lr": 1e-3}, "gpt": {"max_steps": 16}}
    config = write_config(tmp_path / "c.yaml", *prepared, stages=stages, checkpoint_every=4, val_every=8)
    written = yaml.safe_load(config.read_text())  # no dropout, no random style or start-token drops: the
    written["model"].update(dropout=0.0, p_no_style=0.0, p_start=0.0)  # GPT's steps depend on the data only
    config.write_text(yaml.safe_dump(written))
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "dancegen.cli", "train", str(config), "-o", str(run), "-q"],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not step_checkpoints(run / "checkpoints" / "gpt") and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # in the middle of the GPT stage
    assert child.wait() == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert not (run / "checkpoints" / "gpt" / "final.ckpt").exists(), "the run finished before it was killed"
    killed_at = max(read_checkpoint(p)["global_step"] for p in step_checkpoints(run / "checkpoints" / "gpt"))
    assert 4 <= killed_at < 16
    time.sleep(1)  # TensorBoard orders event files by the second in their names: the resumed run's comes after

    assert main(["train", str(config), "-o", str(run), "-q", "--resume"]) == 0
    assert main(["train", str(config), "-o", str(tmp_path / "whole"), "-q"]) == 0  # never interrupted

    for stage, steps in (("vqvae", 4), ("gpt", 16)):
        assert read_checkpoint(run / "checkpoints" / stage / "final.ckpt")["global_step"] == steps
        assert read_checkpoint(tmp_path / "whole" / "checkpoints" / stage / "final.ckpt")["global_step"] == steps
    # the finished VQ-VAE stage was not trained again: one TensorBoard event file, from the first run
    assert len(list((run / "logs" / "vqvae").glob("events.*"))) == 1
    # the loss curve continues: every step the uninterrupted run logged, once, in order (what the killed
    # run logged after its checkpoint is dropped), with the same values: the resumed run's batches are
    # the uninterrupted run's (the loader's place in the epoch is in the checkpoint), and on CPU without
    # dropout the steps are deterministic; the final weights' average is the same too
    resumed, whole = logged(run, "gpt"), logged(tmp_path / "whole", "gpt")
    assert any(s > killed_at for s, _ in resumed) and resumed == whole
    a, b = load_model(run / "last").state_dict(), load_model(tmp_path / "whole" / "last").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert logged(run, "gpt", "val/loss") == logged(tmp_path / "whole", "gpt", "val/loss")
    # at most two step checkpoints per stage, each readable; no temporary or damaged file anywhere
    assert not leftovers(run) and all(len(step_checkpoints(d)) <= 2 for d in (run / "checkpoints").iterdir())
    assert sorted(p.name for p in (run / "checkpoints" / "gpt").iterdir()) == \
        ["final.ckpt", "step=00000012.ckpt", "step=00000016.ckpt"]


def test_a_checkpoint_takes_its_name_only_once_what_was_logged_before_it_is_flushed(tmp_path: Path):
    """Lightning logs a step's loss (and validates) after the batch-end hook that saves the checkpoint: a kill
    in between must not leave a checkpoint whose step's loss was never written (CI once lost step 3's)."""
    folder, seen = tmp_path / "gpt", []
    folder.mkdir()

    class Logger:
        def save(self):
            seen.append(sorted(p.name for p in folder.iterdir()))

    class Trainer:
        global_step, loggers, is_global_zero = 4, [Logger()], True

        def save_checkpoint(self, path, weights_only):
            torch.save({"state_dict": {}, "global_step": self.global_step}, path)

    callback, trainer = Checkpoints(folder, every=4), Trainer()
    callback.on_train_batch_end(trainer, None, None, None, 3)
    assert step_checkpoints(folder) == [] and seen == []  # saved, not yet named: a kill now resumes earlier,
    killed = shutil.copytree(folder, tmp_path / "killed")  # and the resumed run clears the unnamed file
    assert newest_good(killed) is None and not list(killed.iterdir())
    callback.on_train_batch_start(trainer, None, 4)  # the step's metrics are logged: flush, then name it
    assert seen == [[".step=00000004.ckpt.pending.tmp.ckpt"]]
    assert [p.name for p in folder.iterdir()] == ["step=00000004.ckpt"]
    for step in (8, 12, 13):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None, None, None, step - 1)
        callback.on_train_end(trainer, None)  # the last step's checkpoint is named when training ends
    assert [p.name for p in step_checkpoints(folder)] == ["step=00000012.ckpt", "step=00000008.ckpt"]
    assert len(seen) == 3 and read_checkpoint(folder / "step=00000012.ckpt")["global_step"] == 12


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(prepared, tmp_path: Path, capsys, damage):
    config = write_config(tmp_path / "c.yaml", *prepared, run_stages=["gpt"], stages={"gpt": {"max_steps": 6}},
                          checkpoint_every=2, val_every=100)
    run = tmp_path / "run"
    assert main(["train", str(config), "-o", str(run), "-q"]) == 0
    folder = run / "checkpoints" / "gpt"
    assert [p.name for p in step_checkpoints(folder)] == ["step=00000006.ckpt", "step=00000004.ckpt"]
    (folder / "final.ckpt").unlink()  # as if killed while writing step 6's checkpoint's successor
    newest = folder / "step=00000006.ckpt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    capsys.readouterr()

    assert main(["train", str(config), "-o", str(run), "-q", "--resume"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(err) == 1 and err[0].startswith(f"{newest}: damaged checkpoint (") \
        and err[0].endswith("falling back to the previous one"), err
    assert read_checkpoint(folder / "final.ckpt")["global_step"] == 6
    assert read_checkpoint(newest)["global_step"] == 6  # written again, good this time
    assert not leftovers(run)
    steps = [s for s, _ in logged(run, "gpt")]
    assert steps == sorted(set(steps)) and steps[-1] == 5  # (Lightning logs step k's loss at k - 1)


def test_no_good_checkpoint_means_starting_the_stage_over(tmp_path: Path, capsys):
    (tmp_path / "step=00000002.ckpt").write_bytes(b"")
    (tmp_path / "step=00000004.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    torch.save({"state_dict": {}, "global_step": 6, "object": Unpicklable()}, tmp_path / "step=00000006.ckpt")
    (tmp_path / ".step=00000008.ckpt.x1y2z3.tmp.ckpt").write_bytes(b"PK")  # a write the kill cut short
    assert newest_good(tmp_path) is None
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0] for line in err] == [str(tmp_path / f"step=0000000{i}.ckpt") for i in (6, 4, 2)]
    assert "objects other than tensors" in err[0] and "truncated" in err[1] and "truncated" in err[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"step=0000000{i}.ckpt" for i in (2, 4, 6)]


class Unpicklable:
    """An object `torch.load(weights_only=True)` refuses (a class, where only tensors and plain data may be)."""


def test_checkpoints_of_an_earlier_run_need_resume(prepared, tmp_path: Path, capsys):
    config = write_config(tmp_path / "c.yaml", *prepared)
    (tmp_path / "run" / "checkpoints" / "gpt").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "gpt" / "step=00000004.ckpt").write_bytes(b"x")
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "-q"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_resumed_run_says_its_time_counts_from_resuming(prepared, tmp_path: Path, capsys):
    config = write_config(tmp_path / "c.yaml", *prepared, run_stages=["gpt"], stages={"gpt": {"max_steps": 2}},
                          val_every=100)
    run = tmp_path / "run"
    assert main(["train", str(config), "-o", str(run)]) == 0
    first = capsys.readouterr().out
    assert main(["train", str(config), "-o", str(run), "--resume"]) == 0  # the stage finished: nothing to train
    second = capsys.readouterr().out
    assert " min; saved " in first and "since resuming" not in first
    assert "finished earlier" in second and " min since resuming; saved " in second
