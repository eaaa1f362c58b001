"""`harness.analysis.diff`: flattening, merging a config's runs, the differences and their JSON, on recorded
runs without training (the command on real runs: tests/harness/cli/test_diff.py)."""

from __future__ import annotations

import json

import pytest

from harness.analysis.diff import (
    ABSENT,
    Difference,
    Varies,
    as_json,
    diff,
    differences,
    flatten,
    label,
    merge,
    show,
)
from harness.errors import HarnessError
from harness.store import RunStore


def test_flatten_gives_dotted_keys_keeps_lists_whole_and_drops_empty_mappings():
    config = {
        "seed": 1,
        "arch": {"name": "unet", "params": {"bottleneck": "se", "bottleneck_params": {}, "depth": 4}},
        "augment": {"transforms": ["flip", {"name": "rotate"}]},
    }
    assert flatten(config) == {
        "seed": 1,
        "arch.name": "unet",
        "arch.params.bottleneck": "se",
        "arch.params.depth": 4,
        "augment.transforms": ["flip", {"name": "rotate"}],
    }
    assert flatten(None) == {} and flatten({}) == {}


def test_only_differing_keys_in_order_with_a_missing_side_absent():
    a = {"seed": 0, "arch.params.bottleneck": "conv", "train.lr": 0.001, "only_a": 1}
    b = {"seed": 1, "arch.params.bottleneck": "se", "train.lr": 0.001, "only_b": [1, 2]}
    assert differences(a, b) == [
        Difference("seed", 0, 1),
        Difference("arch.params.bottleneck", "conv", "se"),
        Difference("only_a", 1, ABSENT),
        Difference("only_b", ABSENT, [1, 2]),
    ]
    assert differences(a, dict(a)) == []


def test_numbers_compare_as_json_values_but_a_bool_is_not_a_number():
    assert differences({"k": 1}, {"k": 1.0}) == []
    assert differences({"k": True}, {"k": 1}) == [Difference("k", True, 1)]
    assert differences({"k": None}, {}) == [Difference("k", None, ABSENT)]  # null is a value, not missing


def test_merge_keeps_agreed_values_and_lists_every_value_that_varies():
    runs = [{"seed": 0, "lr": 0.1, "device": "cpu"}, {"seed": 1, "lr": 0.1}, {"seed": 2, "lr": 0.1}]
    assert merge(runs) == {"seed": Varies((0, 1, 2)), "lr": 0.1, "device": Varies(("cpu", ABSENT))}
    # the same set of seeds on both sides is no difference, whatever their order
    assert differences({"seed": Varies((0, 1))}, {"seed": Varies((1, 0))}) == []
    assert differences({"seed": Varies((0, 1))}, {"seed": Varies((0, 2))}) != []
    assert differences({"seed": Varies((0, 1))}, {"seed": 0}) != []


def test_how_values_show_in_the_table_and_in_json():
    assert [show(v) for v in ("rdam+gc", 3, None, True, [1, "a"], ABSENT)] == [
        "rdam+gc",
        "3",
        "null",
        "true",
        '[1, "a"]',
        "–",
    ]
    assert show(Varies((0, 1, ABSENT))) == "0, 1, –"
    assert as_json(ABSENT) == {"missing": True}
    assert as_json(Varies((0, ABSENT))) == {"varies": [0, {"missing": True}]}
    assert as_json([1]) == [1]


def _record(store, run_id, config, *, config_hash, dataset_id="synthetic-abc", status="finished"):
    store.start_run(
        run_id=run_id,
        config=config,
        config_hash=config_hash,
        seed=config.get("seed", 0),
        arch="unet",
        loss="ce",
        balancer="none",
        dataset_id=dataset_id,
        device="cpu",
        torch_version="test",
        params=1,
        gflops=None,
        class_names=["background", "soil"],
    )
    store.finish_run(run_id, status=status, metrics={"miou_an2dl": 0.5, "miou_fg": 0.5})


def _config(seed=0, bottleneck="conv", source="synthetic"):
    return {
        "seed": seed,
        "arch": {"name": "unet", "params": {"bottleneck": bottleneck}},
        "data": {"source": source},
    }


@pytest.fixture
def store(store_path):
    with RunStore(store_path) as opened:
        _record(opened, "run-a0", _config(0), config_hash="aaaa1111")
        _record(opened, "run-a1", _config(1), config_hash="aaaa1111")
        _record(opened, "run-b1", _config(1, "se"), config_hash="bbbb2222")
        _record(opened, "run-c0", _config(0, source="mars.npz"), config_hash="cccc3333", dataset_id="mars-1")
        yield opened


def _keys(result):
    return {d.key: (d.a, d.b) for d in result.differences}


def test_two_runs_differ_in_the_setting_and_the_seed(store):
    result = diff(store, "run-a0", "run-b1")
    assert _keys(result) == {"seed": (0, 1), "arch.params.bottleneck": ("conv", "se")}
    assert result.a == {
        "kind": "run",
        "key": "run-a0",
        "config_hash": "aaaa1111",
        "runs": ["run-a0"],
        "seeds": [0],
    }
    assert label(result.a) == "run run-a0 (config aaaa1111, seed 0)"


def test_the_data_source_and_the_dataset_id_are_differences_too(store):
    assert _keys(diff(store, "run-a0", "run-c0")) == {
        "data.source": ("synthetic", "mars.npz"),
        "dataset_id": ("synthetic-abc", "mars-1"),
    }


def test_a_config_side_lists_its_runs_seeds_and_its_varying_seed(store):
    result = diff(store, "aaaa", "bbbb")
    assert (result.a["kind"], result.a["runs"], result.a["seeds"]) == ("config", ["run-a0", "run-a1"], [0, 1])
    assert label(result.a) == "config aaaa1111 (2 finished runs, seeds 0, 1)"
    seed = next(d for d in result.differences if d.key == "seed")
    assert set(seed.a.values) == {0, 1} and seed.b == 1
    data = json.loads(json.dumps(result.to_dict()))
    assert data["same"] is False
    assert {"key": "arch.params.bottleneck", "a": "conv", "b": "se"} in data["differences"]


def test_the_same_config_on_both_sides_is_no_difference(store):
    result = diff(store, "run-a1", "aaaa1111")
    assert result.differences == [Difference("seed", 1, Varies((0, 1)))]  # the run is one of the config's
    assert diff(store, "run-a0", "run-a0").to_dict()["differences"] == []
    assert diff(store, "run-a0", "run-a0").to_dict()["same"] is True


def test_unknown_and_ambiguous_keys_are_refused_as_compare_refuses_them(store):
    with pytest.raises(HarnessError, match="no run id or config hash starts with 'zzz'"):
        diff(store, "zzz", "run-a0")
    with pytest.raises(HarnessError, match="'run-a' is ambiguous"):
        diff(store, "run-b1", "run-a")


def test_the_log_section_is_not_compared_as_the_hash_leaves_it_out(store):
    # A run recorded before the log section existed, and one logged to csv: the same experiment.
    logged = {**_config(0), "log": {"loggers": ["csv"], "dir": "logs", "experiment": None}}
    _record(store, "run-d0", logged, config_hash="aaaa1111")
    assert diff(store, "run-a0", "run-d0").differences == []
