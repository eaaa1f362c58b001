"""`harness tune --executor ray`: a study's trials trained at once as Ray tasks, on any node.

Three parts, so that no worker touches a file on the driver:

- the **keeper** (`StudyKeeper`), an actor on the driver's node, is the only user of the Optuna storage:
  it asks for trials, takes their per-epoch reports (answering whether to prune) and tells their ends;
- the **recorder** (harness.cluster.recorder), another actor there, is the only writer of the run store,
  exactly as for `harness sweep --executor ray`;
- each **trial task** resolves its trial's config on the worker (the hash must match the driver's), trains
  it with the ordinary `execute` into a `RemoteStore`, and reports each epoch to the keeper through the
  same `TrialHook` a local trial uses.

The driver keeps as many trials in flight as the cluster has room for (`--cpus-per-run` / `--gpus-per-run`
slots, or `--parallel N`); TPE's constant liar keeps parallel trials apart. Ends are told in completion
order, so the study is the same as a local one: complete, pruned (the run 'pruned'), failed (its error),
and, after Ctrl-C or a lost node, 'interrupted' trials that the next `tune` queues again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from harness.cluster.recorder import start_recorder
from harness.cluster.session import (
    connect,
    cpus_per_run,
    import_ray,
    on_driver,
    plugin_selection,
    task_options,
)
from harness.cluster.worker import train_on_worker
from harness.errors import ConfigError
from harness.store import RunStore
from harness.store.heartbeat import process_owner
from harness.tune.space import Param, TuneSettings
from harness.tune.study import (
    METRIC_KEYS,
    TrialHook,
    Tuning,
    make_pruner,
    open_study,
    remaining_trials,
    requeue_stopped,
)

# How long Ctrl-C waits for cancelled trials to record their runs as interrupted before the driver leaves.
CANCEL_GRACE_S = 10.0
STATES = {
    "complete": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "fail": optuna.trial.TrialState.FAIL,
}


class StudyKeeper:
    """The study on the driver (run as a Ray actor, one call at a time): ask, report, tell."""

    def __init__(self, settings: dict[str, Any], store_path: str, space: list[Param], pruner: Any):
        self.settings = TuneSettings.model_validate(settings)
        self.study = open_study(self.settings, Path(store_path), pruner)
        self.requeued = requeue_stopped(self.study)
        self.space = space
        self.trials: dict[int, optuna.Trial] = {}  # the trials in flight, by number

    def remaining(self, trials: int | None) -> int | None:
        """Trials left to reach `trials` (default `[tune] trials`), after the stopped ones were queued."""
        return remaining_trials(self.study, self.settings, trials)

    def ask(self) -> tuple[int, dict[str, Any]]:
        trial = self.study.ask()
        trial.set_user_attr("owner", process_owner())  # a killed study's RUNNING trials are found by it
        self.trials[trial.number] = trial
        return trial.number, {p.name: p.suggest(trial) for p in self.space}

    def started(self, number: int, run_id: str) -> None:
        self.trials[number].set_user_attr("run_id", run_id)

    def report(self, number: int, value: float, epoch: int) -> bool:
        """Record an epoch's validation mIoU; whether the pruner stops the trial there."""
        trial = self.trials[number]
        trial.report(value, epoch)
        return trial.should_prune()

    def tell(
        self, number: int, state: str, value: float | None, attrs: dict[str, Any]
    ) -> optuna.trial.FrozenTrial:
        trial = self.trials.pop(number)
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        return self.study.tell(trial, value, state=STATES[state])


def remote_hook(keeper: Any, study: str, number: int, metric: str) -> TrialHook:
    """The hook of a trial trained in a Ray worker: its reports go to the driver's keeper."""
    import ray

    return TrialHook(
        study,
        metric,
        lambda run_id: ray.get(keeper.started.remote(number, run_id)),
        lambda value, epoch: ray.get(keeper.report.remote(number, value, epoch)),
    )


def trial_task(
    config: dict[str, Any],
    expected_hash: str,
    recorder: Any,
    keeper: Any,
    trial: tuple[str, int, str],
    blocked: list[str],
    autoload: bool,
) -> dict[str, Any]:
    """One trial inside a Ray worker: (state, value, user attributes) of its end, never raising for a run
    that failed. `trial`: (study name, trial number, metric)."""
    study, number, metric = trial
    try:
        hook = remote_hook(keeper, study, number, metric)
        ticket = f"trial-{number}"
        result = train_on_worker(config, expected_hash, recorder, ticket, blocked, autoload, hook=hook)
    except Exception as exc:
        return {"state": "fail", "value": None, "attrs": {"status": "failed", "error": first_line(exc)}}
    attrs = {"status": result.status, "config_hash": expected_hash, "run_id": result.run_id}
    if result.error:
        attrs["error"] = result.error
    if result.status == "finished":
        return {"state": "complete", "value": float(result.metrics[METRIC_KEYS[metric][1]]), "attrs": attrs}
    return {"state": "pruned" if result.status == "pruned" else "fail", "value": None, "attrs": attrs}


def first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def slots(ray: Any, cpus: float, gpus: float | None, parallel: int | None) -> int:
    """Trials in flight at once: `parallel`, else as many as the cluster's CPUs (GPUs with --gpus-per-run)
    hold."""
    if parallel is not None:
        return parallel
    resources = ray.cluster_resources()
    fit = resources.get("CPU", 1) / cpus
    if gpus is not None and resources.get("GPU", 0) > 0:
        fit = min(fit, resources["GPU"] / gpus)
    return max(int(fit), 1)


def run_study_on_ray(
    tuning: Tuning,
    *,
    trials: int | None = None,
    address: str | None = None,
    cpus: float | None = None,
    gpus: float | None = None,
    parallel: int | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """`run_study` with the trials as Ray tasks (a local Ray instance unless `address`); the study, loaded
    again on the driver once every trial in flight has ended. `pruner`: instead of `[tune] pruner`."""
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    ray = import_ray()
    cpus = cpus_per_run(cpus)
    store_path = Path(tuning.store_path).expanduser().resolve()
    RunStore(store_path).close()  # a bad store is refused before Ray starts
    started_ray = connect(ray, address)
    try:
        recorder = start_recorder(ray, store_path)
        settings = tuning.settings
        keeper = (
            ray.remote(StudyKeeper)
            .options(**on_driver(ray))
            .remote(
                settings.model_dump(mode="json"),
                str(store_path),
                tuning.space,
                pruner or make_pruner(settings, tuning.epochs()),
            )
        )
        try:
            drive(
                ray,
                tuning,
                keeper,
                recorder,
                trials,
                task_options(ray, cpus, gpus),
                slots(ray, cpus, gpus, parallel),
            )
        finally:
            ray.get(recorder.close.remote())
            ray.kill(recorder)
            ray.kill(keeper)
    finally:
        if started_ray:
            ray.shutdown()
    return open_study(tuning.settings, store_path)


def drive(ray: Any, tuning: Tuning, keeper: Any, recorder: Any, trials, options: dict, width: int) -> None:
    """Keep `width` trials in flight until the study has its trials (or its budget has passed); tell
    each end as it comes."""
    settings = tuning.settings
    blocked, autoload = plugin_selection(tuning.registry)
    task = ray.remote(trial_task).options(**options)
    left = ray.get(keeper.remaining.remote(trials))
    deadline = None if settings.budget_minutes is None else time.monotonic() + settings.budget_minutes * 60
    pending: dict[Any, int] = {}  # task -> trial number

    def room() -> bool:
        more = left is None or left > 0
        return len(pending) < width and more and (deadline is None or time.monotonic() < deadline)

    def told(number: int, state: str, value, attrs) -> None:
        frozen = ray.get(keeper.tell.remote(number, state, value, attrs))
        if tuning.on_trial is not None:
            tuning.on_trial(frozen)

    try:
        while True:
            while room():
                number, values = ray.get(keeper.ask.remote())
                left = None if left is None else left - 1
                try:
                    resolved = tuning.resolve(values)
                except Exception as exc:  # a combination the plugins refuse: FAIL, as a local trial
                    told(number, "fail", None, {"status": "failed", "error": str(exc)})
                    continue
                config = resolved.config.model_dump(mode="json")
                trial = (settings.study, number, settings.metric)
                ref = task.remote(config, resolved.hash, recorder, keeper, trial, blocked, autoload)
                pending[ref] = number
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                number = pending.pop(ref)
                told(number, *trial_end(ray, ref, recorder, number))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a running trial gets KeyboardInterrupt: execute records its run interrupted
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for number in pending.values():
            ray.get(recorder.lost.remote(f"trial-{number}", "the study was cancelled (Ctrl-C)"))
            told(number, "fail", None, {"status": "interrupted", "error": "the study was cancelled (Ctrl-C)"})
        raise


def trial_end(ray: Any, ref: Any, recorder: Any, number: int) -> tuple[str, float | None, dict[str, Any]]:
    """(state, value, attributes) of a trial task that ended; a task Ray lost is 'interrupted' (queued
    again by the next `tune`), its run recorded so by the driver."""
    try:
        end = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the worker died (OOM, node lost) or the task was cancelled
        cause = getattr(exc, "cause", None) or exc
        reason = f"its Ray task was lost: {first_line(cause)}"
        run_id = ray.get(recorder.lost.remote(f"trial-{number}", reason))
        attrs = {"status": "interrupted", "error": reason, **({"run_id": run_id} if run_id else {})}
        return "fail", None, attrs
    return end["state"], end["value"], end["attrs"]
