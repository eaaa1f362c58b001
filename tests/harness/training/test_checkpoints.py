"""harness.training.checkpoints: atomic writes, weights-only loads, the last checkpoint and `--resume`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from harness import api, hookimpl
from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.store import RunStore
from harness.training.checkpoints import (
    CHECKPOINT_FORMAT,
    LAST_CHECKPOINT_NAME,
    CheckpointError,
    ResumePoint,
    check_fits,
    load_best_model,
    load_checkpoint,
    plan_resume,
    restore,
    save_checkpoint,
    save_last,
)
from harness.training.schedule import PlateauSchedule
from tests_support import query, run_cli, tiny


def test_a_checkpoint_round_trips_weights_and_plain_metadata(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "best.pt", model, epoch=3, normalisation=[1.5, 2.0], metrics={"miou": 0.5})
    loaded = load_checkpoint(tmp_path / "best.pt")
    assert loaded["format"] == CHECKPOINT_FORMAT and loaded["epoch"] == 3
    assert loaded["normalisation"] == [1.5, 2.0] and loaded["metrics"] == {"miou": 0.5}
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a harness checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def _trained_step(model, optimizer, schedule):
    loss = model(torch.ones(4, 3)).pow(2).sum()
    loss.backward()
    optimizer.step()
    schedule.step_batch()
    optimizer.zero_grad()


def test_the_last_checkpoint_restores_weights_optimizer_schedule_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = PlateauSchedule(optimizer, warmup_steps=4, factor=0.5, patience=0, min_lr=0.0)
    _trained_step(model, optimizer, schedule)
    loop = {"epochs": 1, "best_epoch": 1, "best_score": 0.4, "best_metrics": None, "images_seen": 4,
            "train_seconds": 1.0, "stale": 0}  # fmt: skip
    path = tmp_path / LAST_CHECKPOINT_NAME
    save_last(
        path,
        model,
        optimizer,
        schedule,
        loop=loop,
        scaler=None,
        normalisation=[0, 1],
        device=model.weight.device,
    )
    expected_draw = torch.rand(3)  # what the RNG gives right after the checkpoint
    _trained_step(model, optimizer, schedule)
    reference = copy.deepcopy(model.state_dict())

    torch.manual_seed(123)
    again = torch.nn.Linear(3, 2)
    again_optimizer = torch.optim.AdamW(again.parameters(), lr=0.1)
    again_schedule = PlateauSchedule(again_optimizer, warmup_steps=4, factor=0.5, patience=0, min_lr=0.0)
    last = load_checkpoint(path)
    assert last["epoch"] == 1 and last["loop"] == loop
    restore(last, again, again_optimizer, again_schedule, None)
    assert torch.equal(torch.rand(3), expected_draw)
    _trained_step(again, again_optimizer, again_schedule)
    assert all(torch.allclose(again.state_dict()[k], v) for k, v in reference.items())


def test_a_resume_point_continues_the_loop_state_up_to_its_checkpoint():
    last = {"epoch": 2, "loop": {"epochs": 2, "stale": 1}}
    history = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]  # epoch 3 was logged, then the run was killed
    point = ResumePoint(run_id="r", last=last, history=history)
    assert point.epoch == 2
    assert point.state_fields() == {"epochs": 2, "stale": 1, "history": [{"epoch": 1}, {"epoch": 2}]}


def test_a_last_checkpoint_must_fit_the_model_its_config_builds():
    check_fits(torch.nn.Linear(3, 2), None)  # nothing to resume: nothing to check
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    last = {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
    }
    point = ResumePoint(run_id="r1", last=last, history=[])
    check_fits(torch.nn.Linear(3, 2), point)
    with pytest.raises(
        CheckpointError,
        match=r"run r1's last checkpoint: weight 'weight' has shape \(2, 3\); the model needs \(2, 4\)",
    ):
        check_fits(torch.nn.Linear(4, 2), point)


def test_plan_resume_reads_the_run_and_refuses_a_live_one_or_a_missing_last_checkpoint(store_path):
    registry = load_plugins()
    result = api.run(tiny(epochs=1), store=store_path)
    before = query(store_path, "SELECT * FROM runs")
    resolved, point = plan_resume(store_path, result.run_id, registry, epochs=2)
    assert resolved.config.train.epochs == 2 and point.epoch == 1 and point.run_id == result.run_id
    assert [h["epoch"] for h in point.history] == [1]
    assert query(store_path, "SELECT * FROM runs") == before  # planning writes nothing

    last = store_path.parent / result.run_id / LAST_CHECKPOINT_NAME
    torch.save({"state_dict": {}, "epoch": 1}, last)
    with pytest.raises(
        CheckpointError, match=r"not a last checkpoint \(missing optimizer, schedule, loop, rng\)"
    ):
        plan_resume(store_path, result.run_id, registry, epochs=2)
    last.unlink()
    with pytest.raises(HarnessError, match="has no last checkpoint"):
        plan_resume(store_path, result.run_id, registry, epochs=2)

    with RunStore(store_path) as store:  # 'running' again, owned by this live process
        config = resolved.config.model_dump(mode="json")
        store.resume_run(result.run_id, config=config, config_hash=resolved.hash, from_epoch=1)
    with pytest.raises(HarnessError, match="is running in another process"):
        plan_resume(store_path, result.run_id, registry, epochs=2)


# --- Checkpoints ---------------------------------------------------------------------------------------


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, torch.nn.Linear(2, 2), epoch=1)

    def dies_halfway(obj, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, torch.nn.Linear(2, 2), epoch=2)
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint, whole
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_is_one_line_naming_the_file(capsys, store_path, damage):
    result = api.run(tiny(), store=store_path)
    data = result.checkpoint.read_bytes()
    result.checkpoint.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint" * 8)
    with pytest.raises(CheckpointError, match="best.pt"):
        load_checkpoint(result.checkpoint)
    for command in ("evaluate", "predict"):
        extra = ["--out", str(store_path.parent / "sub.csv")] if command == "predict" else []
        code, _, err = run_cli(
            capsys, command, result.run_id, "--data", "synthetic", "--store", str(store_path), *extra
        )
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert str(result.checkpoint) in err and "not a readable checkpoint" in err


def test_predict_on_a_run_without_checkpoint_says_so(capsys, store_path):
    assert api.run(tiny(lr=1e30), store=store_path).status == "diverged"  # before any validation
    (run_id,) = [row[0] for row in query(store_path, "SELECT run_id FROM runs")]
    code, _, err = run_cli(
        capsys, "predict", run_id, "--data", "synthetic", "--out", str(store_path.parent / "s.csv"),
        "--store", str(store_path),
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert run_id in err and "has no checkpoint" in err


# --- Resume --------------------------------------------------------------------------------------------


def adam_steps(path: Path) -> set[int]:
    return {int(s["step"]) for s in load_checkpoint(path)["optimizer"]["state"].values()}


def test_resume_continues_epochs_optimizer_and_schedule_exactly(capsys, store_path):
    straight = api.run(tiny(epochs=4, early_stop_patience=50), store=store_path)
    part = api.run(tiny(epochs=2, early_stop_patience=50), store=store_path)
    steps = adam_steps(part.checkpoint.parent / "last.pt")
    assert len(steps) == 1 and (per_epoch := steps.pop() // 2) >= 1

    code, _, err = run_cli(
        capsys, "run", "--resume", part.run_id, "--store", str(store_path), "--no-progress"
    )
    assert code == 2 and "give --epochs" in err  # finished: only more epochs make sense
    code, out, err = run_cli(
        capsys, "run", "--resume", part.run_id[:-2], "--epochs", "4", "--store", str(store_path),
        "--no-progress", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["run_id"] == part.run_id
    assert adam_steps(part.checkpoint.parent / "last.pt") == {4 * per_epoch}  # the step count went on
    with RunStore(store_path, create=False) as store:
        resumed, history = store.get_run(part.run_id), store.history(part.run_id)
        reference = store.history(straight.run_id)
        assert len(store.list_runs()) == 2  # the same run, not a new one
    assert resumed["status"] == "finished" and resumed["epochs"] == 4
    assert resumed["config"]["train"]["epochs"] == 4
    assert resumed["config_hash"] == store_hash(store_path, straight.run_id)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # Weights, optimizer moments, LR schedule and RNG all carried over: epochs 3-4 are those of a
    # 4-epoch run trained in one go.
    for ours, theirs in zip(history, reference, strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["lr"] == pytest.approx(theirs["lr"])


def store_hash(store_path: Path, run_id: str) -> str:
    return query(store_path, "SELECT config_hash FROM runs WHERE run_id = ?", run_id)[0][0]


class Interrupter:
    @hookimpl
    def harness_epoch_end(self, run, epoch, values):
        if epoch == 2:
            raise KeyboardInterrupt


def test_resume_an_interrupted_run_to_its_epoch_limit(capsys, store_path):
    registry = load_plugins(autoload=False)
    registry.manager.register(Interrupter())
    with pytest.raises(KeyboardInterrupt):
        api.run(tiny(epochs=4, early_stop_patience=50), store=store_path, plugins=registry)
    (run_id,) = [row[0] for row in query(store_path, "SELECT run_id FROM runs WHERE status = 'interrupted'")]
    code, _, err = run_cli(capsys, "run", "--resume", run_id, "--store", str(store_path), "--no-progress")
    assert code == 0, err
    with RunStore(store_path, create=False) as store:
        record, history = store.get_run(run_id), store.history(run_id)
    assert record["status"] == "finished" and record["epochs"] == 4 and record["error"] is None
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--set", "train.lr=0.1"], "--set would change it"),
        (["--arch", "segnet", "--seed", "3"], "--arch, --seed would change it"),
        (["--epochs", "1"], "--epochs must be more than 1"),
    ],
)
def test_resume_refuses_what_would_change_the_run(capsys, store_path, extra, match):
    result = api.run(tiny(epochs=1), store=store_path)
    before = query(store_path, "SELECT * FROM runs")
    code, _, err = run_cli(capsys, "run", "--resume", result.run_id, *extra, "--store", str(store_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and match in err
    assert query(store_path, "SELECT * FROM runs") == before  # refused: nothing written


def test_resume_refuses_diverged_and_unknown_runs(capsys, store_path):
    result = api.run(tiny(lr=1e30), store=store_path)
    assert result.status == "diverged"
    code, _, err = run_cli(capsys, "run", "--resume", result.run_id, "--store", str(store_path))
    assert code == 2 and "diverged" in err
    code, _, err = run_cli(capsys, "run", "--resume", "nope", "--store", str(store_path))
    assert code == 2 and "unknown run 'nope'" in err


def test_a_run_without_a_checkpoint_is_refused_with_its_status():
    record = {"run_id": "abc123", "status": "failed", "checkpoint": None, "config": {}}
    with pytest.raises(HarnessError, match=r"run abc123 \(failed\) has no checkpoint to load"):
        load_best_model(record, None)
