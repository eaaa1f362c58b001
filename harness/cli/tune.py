"""`harness tune`: an Optuna study over any setting; every trial a normal run in the store; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from harness.cli.options import (
    EXIT_FAILED,
    add_common,
    add_config_options,
    add_ray_options,
    check_ray_options,
    error_console,
    flag_settings,
    load_registry,
    plugin_params,
    wide_console,
)
from harness.config import read_toml
from harness.errors import ConfigError, HarnessError
from harness.store import resolve_store_path

if TYPE_CHECKING:  # optuna is the `tune` extra: imported when the command runs, not when the CLI starts
    import optuna

EPILOG = """The tune file is a RunConfig TOML (the base of every trial) with a [tune] table, e.g.

  [train]
  epochs = 40
  [tune]
  study = "unet-10min"
  trials = 40            # or budget_minutes = 120
  trial_minutes = 5      # each trial's train.max_minutes
  metric = "an2dl"       # or fg
  pruner = "median"      # or hyperband, none
  [tune.space]
  "train.lr" = { float = [3e-4, 1e-2], log = true }
  "train.batch_size" = { int = [8, 64], log = true }
  "loss.params.parts.focal" = { float = [0.0, 2.0] }
  "arch.params.bottleneck" = { categorical = ["conv", "se+gc", "aspp"] }

Other [tune] keys: startup_trials (5: random trials before TPE and the pruner act), warmup_epochs (1:
epochs before the median pruner may stop a trial), seed (0: the sampler's). The study lives in
optuna.sqlite beside the store; rerunning the same command goes on where a killed one stopped. Trials
are runs in the store: `harness leaderboard --study NAME` ranks them (--status all: pruned ones too).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="search any settings with Optuna (TPE, pruning), every trial a run in the store",
        description="Run an Optuna study (TPE sampler, median or Hyperband pruner on per-epoch validation "
        "mIoU) over the [tune.space] of --config FILE.toml. At the end: the ranked trials, the best trial's "
        "config as a ready --config TOML file, and the parameter importances as a table and a PNG. "
        "Trials run one after another here, or several at once as Ray tasks (--executor ray).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    add_config_options(p)
    p.add_argument("--trials", type=int, help="the study's number of trials in all (overrides [tune] trials)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where the best config and the importances go; default tune/STUDY/ beside the store",
    )
    add_ray_options(p, "trial")
    p.add_argument(
        "--parallel",
        type=int,
        help="--executor ray: trials in flight at once (default: as many as the cluster's CPUs hold at "
        "--cpus-per-run each, or its GPUs at --gpus-per-run)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--top", type=int, default=10, help="how many trials the final table shows (default 10)")


def run(args: argparse.Namespace) -> int:
    if not args.config:
        raise ConfigError("harness tune needs --config FILE.toml with a [tune] table (see --help)")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    check_ray_options(args)
    if args.parallel is not None and args.executor != "ray":
        raise ConfigError("--parallel sets how many Ray trials run at once; it needs --executor ray")
    if args.parallel is not None and args.parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {args.parallel}")
    try:
        from harness.tune.space import check_space, parse_tune
        from harness.tune.study import Tuning, run_study, storage_path
    except ModuleNotFoundError as exc:
        if exc.name not in ("optuna", "sqlalchemy"):
            raise
        raise HarnessError("harness tune needs Optuna: pip install 'segharness[tune]'") from None
    registry = load_registry(args, error_console())
    tree = read_toml(args.config)
    settings, space = parse_tune(tree)
    base = {k: v for k, v in tree.items() if k != "tune"}
    for section in ("arch", "loss", "balancer"):  # --arch etc. replace the file's choice, as in `run`
        name = getattr(args, section)
        if name is not None and (base.get(section) or {}).get("name") != name:
            base[section] = {"name": name}
    flags = flag_settings(args)
    params = plugin_params(args)
    check_space(space, base, registry, flags, params)  # every bound and choice, before any trial
    store_path = resolve_store_path(args.store)
    tuning = Tuning(settings, space, base, registry, store_path, flags, params, on_trial=trial_line)
    print(f"study {settings.study!r} in {storage_path(store_path)} (runs in {store_path})")
    if args.executor == "ray":
        from harness.tune.ray_trials import run_study_on_ray

        study = run_study_on_ray(
            tuning,
            trials=args.trials,
            address=args.address,
            cpus=args.cpus_per_run,
            gpus=args.gpus_per_run,
            parallel=args.parallel,
        )
    else:
        study = run_study(tuning, trials=args.trials)
    out = Path(args.out) if args.out else store_path.parent / "tune" / settings.study
    return summarise(study, store_path, out, registry, settings.metric, args.top)


def trial_line(trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial."""
    value = "–" if trial.value is None else f"{trial.value:.4f}"
    status = trial.user_attrs.get("status", trial.state.name.lower())
    error = f": {trial.user_attrs['error']}" if "error" in trial.user_attrs and status != "finished" else ""
    run = trial.user_attrs.get("run_id", "no run")
    print(f"trial {trial.number} {status} {value} ({run}){error}", flush=True)


def summarise(study: optuna.Study, store_path: Path, out: Path, registry, metric: str, top: int) -> int:
    """The ranked trials, the best config file and the importances."""
    from harness.tune.results import importance_png, importances, ranked_trials, write_best_config

    table = Table(title=f"study {study.study_name}: {len(study.trials)} trials ({metric} val mIoU)")
    names = sorted({name for t in study.trials for name in t.params})
    for column in ("#", "trial", "status", "mIoU", "run", *names):
        table.add_column(column)
    for rank, trial in enumerate(ranked_trials(study)[:top], start=1):
        value = "–" if trial.value is None else f"{trial.value:.4f}"
        status = trial.user_attrs.get("status", trial.state.name.lower())
        cells = [_cell(trial.params.get(n)) for n in names]
        table.add_row(
            str(rank), str(trial.number), status, value, trial.user_attrs.get("run_id", "–"), *cells
        )
    console = wide_console()
    console.print(table)
    best = write_best_config(study, store_path, out / "best.toml", registry, metric)
    if best is None:
        print("no trial finished: no best config")
        return EXIT_FAILED
    trial, reproduces = best
    print(f"best: trial {trial.number} ({trial.value:.4f}); its config: {out / 'best.toml'}")
    if not reproduces:
        print("  warning: the file resolves to another config hash (a setting TOML cannot write, e.g. None)")
    found = importances(study)
    if found is None:
        print("importances: need at least two finished trials with different parameters")
        return 0
    imp = Table(title="parameter importances (optuna.importance)")
    imp.add_column("parameter")
    imp.add_column("importance")
    for name, value in found.items():
        imp.add_row(name, f"{value:.3f}")
    console.print(imp)
    importance_png(found, out / "importances.png", f"study {study.study_name}")
    print(f"importances: {out / 'importances.png'}")
    return 0


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
