"""harness.training.run: one run end to end on tiny synthetic data: record, checkpoint, statuses, budget."""

from __future__ import annotations

import math

import pytest
import torch

from harness import api, hookimpl
from harness.errors import ConfigError
from harness.plugins import load_plugins
from harness.store import RunStore
from harness.training.checkpoints import load_checkpoint
from tests_support import tiny


def test_one_epoch_run_is_recorded_with_a_loadable_checkpoint(store_path):
    result = api.run(tiny(), store=store_path)
    assert result.status == "finished" and result.epochs == 1 and result.best_epoch == 1
    assert 0.0 <= result.miou <= 1.0
    assert set(result.metrics["iou"]) == {"background", "soil", "bedrock", "sand", "big rock"}
    with RunStore(store_path, create=False) as store:
        record = store.get_run(result.run_id)
        history = store.history(result.run_id)
    assert record["status"] == "finished"
    params = record["config"]["arch"]["params"]
    assert {k: params[k] for k in ("depth", "width", "norm", "dropout")} == {
        "depth": 2,
        "width": 4,
        "norm": "batch",
        "dropout": 0.1,
    }
    assert (params["encoder_block"], params["bottleneck"], params["skip_fusion"]) == ("conv", "conv", "none")
    assert record["params"] > 0 and record["gflops"] > 0 and record["train_img_s"] > 0
    assert [h["epoch"] for h in history] == [1]
    checkpoint = load_checkpoint(result.checkpoint)  # weights_only=True inside
    assert checkpoint["epoch"] == 1 and checkpoint["config"]["seed"] == 0
    assert all(isinstance(v, torch.Tensor) for v in checkpoint["state_dict"].values())


def test_same_seed_same_result(store_path):
    first = api.run(tiny(), store=store_path)
    second = api.run(tiny(), store=store_path)
    assert first.metrics == second.metrics
    assert first.history[0]["train_loss"] == pytest.approx(second.history[0]["train_loss"], rel=1e-5)


def test_background_is_never_predicted(store_path):
    result = api.run(tiny(), store=store_path)
    masks = api.predict(result.run_id, "synthetic", store=store_path)
    assert masks.shape == (64, 64, 128) and masks.dtype.name == "uint8"
    assert masks.min() >= 1


class Interrupter:
    @hookimpl
    def harness_epoch_end(self, run, epoch, values):
        raise KeyboardInterrupt


class Crasher:
    @hookimpl
    def harness_epoch_end(self, run, epoch, values):
        raise RuntimeError("disk on fire")


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def harness_run_start(self, run):
        self.calls.append(("start", run.run_id))

    @hookimpl
    def harness_epoch_end(self, run, epoch, values):
        self.calls.append(("epoch", epoch, values["val_miou"]))

    @hookimpl
    def harness_run_end(self, run, status, metrics):
        self.calls.append(("end", status))


def _registry_with(plugin):
    registry = load_plugins(autoload=False)
    registry.manager.register(plugin)
    return registry


def test_ctrl_c_records_interrupted_and_keeps_finished_work(store_path):
    with pytest.raises(KeyboardInterrupt):
        api.run(tiny(epochs=3), store=store_path, plugins=_registry_with(Interrupter()))
    with RunStore(store_path, create=False) as store:
        (record,) = store.list_runs()
    assert record["status"] == "interrupted"
    assert record["epochs"] == 1 and record["metrics"]["miou_an2dl"] is not None
    assert load_checkpoint(store_path.parent / record["run_id"] / "best.pt")["epoch"] == 1


def test_exception_records_failed_with_message(store_path):
    with pytest.raises(RuntimeError):
        api.run(tiny(), store=store_path, plugins=_registry_with(Crasher()))
    with RunStore(store_path, create=False) as store:
        (record,) = store.list_runs()
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: disk on fire"


def test_lifecycle_hooks_see_the_run(store_path):
    recorder = Recorder()
    result = api.run(tiny(epochs=2), store=store_path, plugins=_registry_with(recorder))
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["start", "epoch", "epoch", "end"]
    assert recorder.calls[0][1] == result.run_id and recorder.calls[-1] == ("end", "finished")


def test_time_budget_stops_and_still_records(store_path):
    result = api.run(tiny(epochs=50, max_minutes=0.0001), store=store_path)
    assert result.status == "finished"
    assert result.epochs == 1 and not math.isnan(result.miou)


def test_bad_plugin_parameter_writes_nothing(store_path):
    config = tiny()
    config["arch"]["params"]["depth"] = 99
    with pytest.raises(Exception, match="depth"):
        api.run(config, store=store_path)
    assert not store_path.exists()


DEEP = """
import torch
from torch import nn
from harness import hookimpl
from harness.specs import ArchitectureSpec, NoParams

class TwoHeads(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, padding=1)
        self.coarse = nn.Conv2d(8, num_classes, 1)
        self.fine = nn.Conv2d(8, num_classes, 1)
        self.register_buffer("coarse_init", self.coarse.weight.detach().clone())

    def forward(self, x):
        h = torch.relu(self.body(x))
        if self.training:
            return [self.coarse(h), self.fine(h)]
        return self.fine(h)

@hookimpl
def harness_architectures():
    return [ArchitectureSpec(name="twoheads", summary="deep supervision test double", params=NoParams,
                             build=lambda p, in_channels, num_classes: TwoHeads(num_classes),
                             deep_supervision=True)]
"""


def test_deep_supervision_flag_averages_the_heads(store_path, third_party):
    third_party({"deep": DEEP})
    config = tiny()
    config["arch"] = {"name": "twoheads"}
    result = api.run(config, store=store_path, plugins=load_plugins())
    assert result.status == "finished"
    # the coarse head only learns if the loop put its output into the loss
    model = api.load_run(result.run_id, store=store_path, plugins=load_plugins()).model
    assert not torch.equal(model.coarse.weight, model.coarse_init)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_and_predict(store_path):
    result = api.run(tiny(device="cuda", epochs=2), store=store_path)
    assert result.status == "finished"
    with RunStore(store_path, create=False) as store:
        assert store.get_run(result.run_id)["device"].startswith("cuda")
    masks = api.predict(result.run_id, "synthetic", store=store_path, device="cuda")
    assert masks.min() >= 1


def test_deep_supervision_weights_apply_and_are_checked_before_recording(store_path, third_party):
    third_party({"deep": DEEP})
    config = tiny(weight_decay=0.0, deep_supervision_weights=[0.0, 1.0])
    config["arch"] = {"name": "twoheads"}
    result = api.run(config, store=store_path, plugins=load_plugins())
    model = api.load_run(result.run_id, store=store_path, plugins=load_plugins()).model
    assert torch.equal(model.coarse.weight, model.coarse_init)  # weight 0: the coarse head never learns

    other_store = store_path.parent / "other.sqlite"
    config["train"]["deep_supervision_weights"] = [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="has 3 values; 'twoheads' with these params gives 2 outputs"):
        api.run(config, store=other_store, plugins=load_plugins())
    assert not other_store.exists()
