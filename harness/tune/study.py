"""A `harness tune` study on Optuna: TPE sampling, pruning from per-epoch validation mIoU, every trial a
normal run in the store, and the study kept beside the store so that a killed `tune` resumes.

- Storage: Optuna's RDB storage in `optuna.sqlite` next to the run store (`storage_path`). The study maps
  each trial to its run through the trial's user attributes (`run_id`, `status`), so the store's schema
  knows nothing of studies; `study_run_ids` is what `harness leaderboard --study` reads.
- Pruning: a hook object registered on the plugin manager for the trial reports each epoch's validation
  mIoU (`harness_epoch_end`) to the trial and raises `Pruned` when the pruner says so; the run is
  recorded 'pruned' (best epoch, metrics and checkpoints kept) and the trial PRUNED.
- Failures: a trial whose run fails, diverges or whose sampled combination the plugins refuse is FAIL
  (its error in the trial's `error` attribute) and the study goes on.
- Resume: finished trials (complete, pruned, failed) count towards `trials`; a trial stopped by Ctrl-C or
  SIGTERM, or left RUNNING by a killed process, is marked failed with status 'interrupted' and its
  parameters are queued again, so the next `tune` runs it first and repeats nothing that finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pluggy

from harness.store.heartbeat import process_gone, process_owner
from harness.training.run import execute
from harness.training.state import Pruned
from harness.tune.space import Param, TuneSettings, resolve_trial

# harness.hookimpl's marker: `from harness import hookimpl` would reach harness/__init__'s lazy notebook API,
# which the layers forbid this package.
hookimpl = pluggy.HookimplMarker("harness")
STORAGE_NAME = "optuna.sqlite"
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
METRIC_KEYS = {"an2dl": ("val_miou", "miou_an2dl"), "fg": ("val_miou_fg", "miou_fg")}


def storage_path(store_path: Path) -> Path:
    """Where the studies of the run store at `store_path` live."""
    return Path(store_path).parent / STORAGE_NAME


def storage(store_path: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{storage_path(store_path)}")


def make_pruner(settings: TuneSettings, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner `[tune] pruner` names: median (after startup_trials and warmup_epochs), hyperband, none."""
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs
        )
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


def open_study(
    settings: TuneSettings, store_path: Path, pruner: optuna.pruners.BasePruner | None = None
) -> optuna.Study:
    """The study named `settings.study` in the storage beside the store (created on first use)."""
    storage_path(store_path).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the CLI prints one line per trial instead
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage(store_path),
        pruner=pruner or optuna.pruners.NopPruner(),
        direction="maximize",
        load_if_exists=True,
    )
    # Seeded by the trials so far: a resumed study's random startup trials would otherwise draw the very
    # points the first session drew (the seed restarts the sampler's stream).
    seed = settings.seed + len(study.get_trials(deepcopy=False))
    # constant_liar: trials running at once (--executor ray) count as bad points while they run, so TPE
    # does not ask for the same point again (Optuna 5's default, said here because Ray depends on it).
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=settings.startup_trials, constant_liar=True
    )
    return study


def study_run_ids(store_path: Path, study: str) -> dict[str, int]:
    """run id -> trial number of every trial of `study` that recorded a run; ValueError naming the
    studies there are when there is no such study."""
    path = storage_path(store_path)
    names = (
        [s.study_name for s in optuna.get_all_study_summaries(storage(store_path))] if path.exists() else []
    )
    if study not in names:
        known = ", ".join(names) or "none"
        raise ValueError(f"no study {study!r} beside {store_path} (studies: {known})")
    loaded = optuna.load_study(study_name=study, storage=storage(store_path))
    return {
        t.user_attrs["run_id"]: t.number
        for t in loaded.get_trials(deepcopy=False)
        if "run_id" in t.user_attrs
    }


def requeue_stopped(study: optuna.Study) -> int:
    """Mark failed the trials a killed `tune` left RUNNING, and queue again the parameters of every
    interrupted trial (once): the study goes on where it stopped. Returns how many were queued."""
    stale = set(study.user_attrs.get("stale", []))
    requeued = set(study.user_attrs.get("requeued", []))
    for trial in study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.RUNNING and process_gone(trial.user_attrs.get("owner")):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            stale.add(trial.number)
    study.set_user_attr("stale", sorted(stale))
    todo = [t for t in study.get_trials(deepcopy=False) if interrupted(t, stale) and t.number not in requeued]
    for trial in todo:
        study.enqueue_trial(trial.params, skip_if_exists=False)
        requeued.add(trial.number)
    study.set_user_attr("requeued", sorted(requeued))
    return len(todo)


def interrupted(trial: optuna.trial.FrozenTrial, stale: set[int]) -> bool:
    """Whether the trial was stopped from outside (Ctrl-C, SIGTERM, a killed process), not by its run."""
    return trial.user_attrs.get("status") == "interrupted" or trial.number in stale


def counted(study: optuna.Study) -> int:
    """Trials that count towards `trials`: complete, pruned, and failed for a reason of their own."""
    stale = set(study.user_attrs.get("stale", []))
    return sum(t.state in DONE and not interrupted(t, stale) for t in study.get_trials(deepcopy=False))


class TrialHook:
    """The plugin registered for one trial's run: names its run, reports its epochs, prunes it.

    `started(run_id)` and `report(value, epoch) -> prune?` reach the trial: directly here (`local_hook`),
    through the driver's keeper actor on Ray (harness.tune.ray_trials).
    """

    def __init__(self, study: str, metric: str, started, report):
        self.study, self.key = study, METRIC_KEYS[metric][0]
        self.started, self.report = started, report

    @hookimpl
    def harness_run_start(self, run) -> None:
        self.started(run.run_id)

    @hookimpl
    def harness_epoch_end(self, run, epoch: int, values: dict[str, Any]) -> None:
        value = values.get(self.key)
        if value is None:
            return
        if self.report(value, epoch):
            raise Pruned(f"pruned by study {self.study} at epoch {epoch} (val mIoU {value:.4f})")


def local_hook(trial: optuna.Trial, metric: str) -> TrialHook:
    """The hook of a trial trained in this process."""

    def report(value: float, epoch: int) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    return TrialHook(
        trial.study.study_name, metric, lambda run_id: trial.set_user_attr("run_id", run_id), report
    )


class TrialFailed(Exception):
    """A trial's run ended failed or diverged (already recorded in the store): the trial is FAIL."""


@dataclass
class Tuning:
    """What one trial needs: the base config, the space, the flags, the plugins and the store."""

    settings: TuneSettings
    space: list[Param]
    base: dict[str, Any]
    registry: Any
    store_path: Path
    flags: list[str]
    plugin_params: dict
    on_trial: Any = None  # called with each finished FrozenTrial (the CLI prints a line)

    def resolve(self, values: dict[str, Any]):
        """The resolved config of a trial with `values`: the base, the values, the flags, the trial's
        time budget."""
        flags = list(self.flags)
        if self.settings.trial_minutes is not None:
            flags.append(f"train.max_minutes={self.settings.trial_minutes}")
        return resolve_trial(self.base, values, self.registry, flags, self.plugin_params)

    def epochs(self) -> int:
        """The trials' epoch limit (what Hyperband sizes its brackets by)."""
        return resolve_trial(self.base, {}, self.registry, self.flags, self.plugin_params).config.train.epochs

    def objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", process_owner())
        values = {p.name: p.suggest(trial) for p in self.space}
        try:
            resolved = self.resolve(values)
        except Exception as exc:  # a combination the plugins refuse (each value alone was checked)
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", str(exc))
            raise
        hook = local_hook(trial, self.settings.metric)
        name = f"tune-{self.settings.study}-{trial.number}"
        self.registry.manager.register(hook, name=name)
        try:
            result = execute(resolved, self.store_path, self.registry, progress=False)
        except KeyboardInterrupt:
            trial.set_user_attr("status", "interrupted")
            raise
        except Exception as exc:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        finally:
            self.registry.manager.unregister(hook)
        trial.set_user_attr("status", result.status)
        trial.set_user_attr("config_hash", resolved.hash)
        if result.error:
            trial.set_user_attr("error", result.error)
        if result.status == "pruned":
            raise optuna.TrialPruned(result.error)
        if result.status != "finished":
            raise TrialFailed(f"run {result.run_id} {result.status}: {result.error}")
        return float(result.metrics[METRIC_KEYS[self.settings.metric][1]])


def remaining_trials(study: optuna.Study, settings: TuneSettings, trials: int | None) -> int | None:
    """How many trials are left to reach `trials` (default `[tune] trials`); None: no limit (a budget)."""
    target = trials if trials is not None else settings.trials
    return None if target is None else max(target - counted(study), 0)


def run_study(
    tuning: Tuning, *, trials: int | None = None, pruner: optuna.pruners.BasePruner | None = None
) -> optuna.Study:
    """Run the study until it has `trials` counted trials (default `[tune] trials`) or `budget_minutes`
    pass; a failing trial does not stop it, Ctrl-C does (after recording the trial interrupted)."""
    settings = tuning.settings
    study = open_study(settings, tuning.store_path, pruner or make_pruner(settings, tuning.epochs()))
    requeue_stopped(study)
    remaining = remaining_trials(study, settings, trials)
    if remaining == 0:
        return study
    callbacks = [] if tuning.on_trial is None else [lambda _study, trial: tuning.on_trial(trial)]
    timeout = None if settings.budget_minutes is None else settings.budget_minutes * 60
    study.optimize(
        tuning.objective,
        n_trials=remaining,
        timeout=timeout,
        catch=(Exception,),
        callbacks=callbacks,
        gc_after_trial=False,
    )
    return study
