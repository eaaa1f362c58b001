"""What predict, evaluate and export score with: names expand to runs (a configuration hash to all its
finished runs), one run is used as it is, several are averaged, and the validation split is the run's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import api
from harness.data.synthetic import synthetic
from harness.errors import HarnessError
from harness.store import RunNotFound, RunStore
from harness.training.predictor import expand, validation_data
from harness.training.prepare import load_data
from tests_support import add_run, tiny


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny finished runs of one configuration (seeds 0 and 1) in one store."""
    store = tmp_path_factory.mktemp("predictor") / "harness.sqlite"
    runs = [api.run({**tiny(), "seed": seed}, store=store) for seed in (0, 1)]
    assert {r.status for r in runs} == {"finished"}
    return store, [r.run_id for r in runs]


def test_names_expand_to_runs_and_a_configuration_to_its_finished_runs(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        add_run(store, "r-one", None, seed=0, config_hash="abc123")
        add_run(store, "r-two", None, seed=1, config_hash="abc123")
        add_run(store, "r-bad", None, seed=2, config_hash="abc123", status="failed")
        add_run(store, "x-other", None, config_hash="def456")
        ids = lambda names: [r["run_id"] for r in expand(names, store)]  # noqa: E731
        assert ids(["r-t"]) == ["r-two"]  # a unique run id prefix
        assert sorted(ids(["abc"])) == ["r-one", "r-two"]  # a config hash prefix: its finished runs
        assert sorted(ids(["abc", "r-one", "x-other"])) == ["r-one", "r-two", "x-other"]  # each run once
        with pytest.raises(RunNotFound, match="unknown run 'zzz'"):
            expand(["zzz"], store)


def test_one_run_is_used_as_it_is_and_an_ensemble_of_one_gives_the_same(two_runs):
    store, (first, _) = two_runs
    data = synthetic(n=6, test_n=3, seed=5)
    alone = api.predict(first, data, store=store, device="cpu")
    assert np.array_equal(api.predict([first], data, store=store, device="cpu", weights=[1.0]), alone)
    scored = api.evaluate(first, data, store=store, device="cpu")
    as_ensemble = api.evaluate(first, data, store=store, device="cpu", weights=[2.0])
    assert as_ensemble["runs"] == [first] and as_ensemble["miou_an2dl"] == scored["miou_an2dl"]


def test_a_configuration_is_the_mean_of_its_runs_probabilities(two_runs):
    store, ids = two_runs
    loaded = [api.load_run(run_id, store=store) for run_id in ids]
    config_hash = loaded[0].record["config_hash"]
    predictor = api.load_predictor(config_hash[:8], store=store, device="cpu")
    assert sorted(predictor.run_ids) == sorted(ids)
    x = synthetic(n=2, test_n=2, seed=6).test_images.unsqueeze(1).float()
    by_id = {run.run_id: run for run in loaded}
    with torch.no_grad():
        got = predictor.model(x).exp()
        probs = [torch.softmax(by_id[i].model((x - by_id[i].norm.mean) / by_id[i].norm.std), 1) for i in ids]
    assert torch.allclose(got, (probs[0] + probs[1]) / 2, atol=1e-5)
    assert not torch.allclose(probs[0], probs[1], atol=1e-3)


def test_weights_must_match_the_runs_the_names_stand_for(two_runs):
    store, ids = two_runs
    with pytest.raises(HarnessError, match="--weights gives 3 weights for 2 runs"):
        api.load_predictor(ids, store=store, weights=[1, 2, 3])


def test_the_validation_split_is_the_one_the_run_validated_on(two_runs):
    store, (first, _) = two_runs
    loaded = api.load_run(first, store=store)
    with np.load(loaded.record["checkpoint"].replace("best.pt", "val_per_image.npz")) as stored:
        indices = stored["indices"]
    val = validation_data(loaded.resolved)
    everything = load_data(loaded.resolved)
    assert torch.equal(val.images, everything.images[torch.as_tensor(indices)])
