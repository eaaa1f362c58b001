"""What the subcommands share: their common options, flags turned into settings, the registry, the consoles.

- `add_common` (`--store`, `-p no:NAME`), `add_plugin_option`, `add_set_option` and `add_config_options`
  (the options that define a run: `run`, `sweep`, `data preview`), `add_log_options` (`--log`, `--log-dir`:
  `run` and `sweep`);
- `flag_settings`: the run-config flags as `--set` assignments (flags override the TOML file, `--set`
  overrides flags), and `resolved_config`, the checked configuration of `run` and `data preview`;
- `load_registry`: the plugins, with one warning line per plugin that failed to load;
- `error_console` (stderr, built once) and `wide_console` (stdout: the terminal's width, `COLUMNS` or 200).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from typing import Any

from rich.console import Console

from harness.config import Resolved, build_config, read_toml, resolve
from harness.errors import HarnessError
from harness.inference.tta import TTA_CHOICES
from harness.plugins import Registry, load_plugins, parse_blocked
from harness.training.signals import ending_at_once

EXIT_FAILED = 1

# flag -> config path; flags override the TOML file, --set overrides flags
FLAG_SETTINGS = {
    "epochs": "train.epochs",
    "max_minutes": "train.max_minutes",
    "seed": "seed",
    "device": "train.device",
    "limit": "data.limit",
    "batch_size": "train.batch_size",
    "data": "data.source",
    "log": "log.loggers",
    "log_dir": "log.dir",
    "folds": "data.folds",
    "fold": "data.fold",
}

PLUGIN_SECTIONS = ("arch", "loss", "balancer", "data")


def add_common(parser: argparse.ArgumentParser) -> None:
    """`--store PATH` and `-p no:NAME`: what every subcommand that reads the store and plugins takes."""
    parser.add_argument(
        "--store", metavar="PATH", help="run store (SQLite); default $HARNESS_STORE or runs/harness.sqlite"
    )
    add_plugin_option(parser)


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    """The repeatable `-p no:NAME`, collected in `args.plugin_options`."""
    parser.add_argument(
        "-p",
        dest="plugin_options",
        action="append",
        default=[],
        metavar="no:NAME",
        help="disable a plugin by name (repeatable), e.g. -p no:my_blocks",
    )


def add_set_option(p: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--set SECTION.KEY=VALUE` config override, collected in `args.settings`."""
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help_text
    )


def add_config_options(p: argparse.ArgumentParser, lists: bool = False) -> None:
    """The options that define a run's configuration (shared by `run`, `sweep` and `data preview`).

    With `lists` (sweep), --arch/--loss/--balancer take comma-separated lists and --config may hold
    a [[runs]] list."""
    if lists:
        p.add_argument("--arch", help="comma-separated architectures, e.g. unet,unetpp (default unet)")
        p.add_argument("--loss", help="comma-separated losses, e.g. ce,combo (default ce)")
        p.add_argument("--balancer", help="comma-separated balancers, e.g. none,copypaste (default none)")
    else:
        p.add_argument(
            "--arch", help="architecture name (see `harness list --kind architecture`); default unet"
        )
        p.add_argument("--loss", help="loss name; default ce")
        p.add_argument("--balancer", help="balancer name; default none")
    for section in PLUGIN_SECTIONS:
        p.add_argument(
            f"--{section}-param",
            action="append",
            default=[],
            metavar="K=V",
            help=f"{section} plugin parameter (repeatable); validated by the plugin's params model",
        )
    p.add_argument("--data", help="dataset name or AN2DL .npz path; default synthetic")
    p.add_argument("--config", metavar="FILE.toml", help="a RunConfig as TOML (flags and --set override it)")
    add_set_option(p, "override any config value, e.g. --set train.lr=3e-4 --set augment.preset=standard")
    p.add_argument("--epochs", type=int, help="maximum epochs (train.epochs)")
    p.add_argument("--seed", type=int, help="run seed")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--batch-size", type=int, help="training batch size (train.batch_size)")
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="K-fold cross-validation (data.folds): stratified on the rarest class, never splitting a "
        "group; without --fold every fold is trained, one run each",
    )
    p.add_argument(
        "--fold", type=int, metavar="I", help="train only fold I of 0..K-1 (data.fold; needs --folds)"
    )


def add_log_options(p: argparse.ArgumentParser) -> None:
    """`--log NAMES` and `--log-dir DIR` (`run` and `sweep`): the loggers, off unless asked for."""
    p.add_argument(
        "--log",
        metavar="NAMES",
        help="also log each run to these comma-separated loggers: csv, mlflow, tensorboard (log.loggers; "
        "default none; not part of the config hash)",
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="where loggers write: DIR/<run_id>/ (csv, tensorboard) and DIR/mlruns (mlflow, unless "
        "MLFLOW_TRACKING_URI is set); default the run's directory and the store's (log.dir)",
    )


def add_ray_options(p: argparse.ArgumentParser, what: str) -> None:
    """--executor, --address, --cpus-per-run and --gpus-per-run; `what`: what a task trains (run, trial)."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help=f"local (default): one {what} after another here; ray: each {what} a Ray task on any node, "
        "recorded in this machine's store, its files sent back here (pip install 'segharness[ray]')",
    )
    p.add_argument("--address", help="Ray cluster to join (with --executor ray); default: start a local one")
    p.add_argument("--cpus-per-run", type=float, help=f"--executor ray: CPUs of each {what}'s task (1)")
    p.add_argument(
        "--gpus-per-run", type=float, help=f"--executor ray: GPUs of each {what}'s task, e.g. 0.25 (1 if any)"
    )


def check_ray_options(args: argparse.Namespace) -> None:
    """The Ray-only flags need --executor ray, and their sizes must be positive: HarnessError otherwise."""
    given = [flag for flag in ("address", "cpus_per_run", "gpus_per_run") if getattr(args, flag) is not None]
    if args.executor != "ray":
        if given:
            name = given[0].replace("_", "-")
            does = "joins a Ray cluster" if name == "address" else "sizes Ray tasks"
            raise HarnessError(f"--{name} {does}; it needs --executor ray")
        return
    for flag in ("cpus_per_run", "gpus_per_run"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise HarnessError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")


def flag_settings(args: argparse.Namespace) -> list[str]:
    """The given run-config flags as `path=value` assignments, then the `--set` ones (which win)."""
    flags = [
        f"{path}={getattr(args, flag)}"
        for flag, path in FLAG_SETTINGS.items()
        if getattr(args, flag, None) is not None
    ]
    return flags + list(args.settings)


def plugin_params(args: argparse.Namespace) -> dict[str, list[str]]:
    """`--arch-param`, `--loss-param`, `--balancer-param` and `--data-param`, by section."""
    return {s: getattr(args, f"{s}_param") for s in PLUGIN_SECTIONS}


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The `--config` file with the `--arch/--loss/--balancer` choices on top."""
    base = read_toml(args.config) if args.config else {}
    for section in ("arch", "loss", "balancer"):
        name = getattr(args, section)
        if name is None:
            continue
        node = base.get(section) if isinstance(base.get(section), dict) else {}
        if node.get("name") != name:
            node = {"name": name}  # the file's params belonged to another plugin
        base[section] = node
    return base


def resolved_config(args: argparse.Namespace, registry: Registry) -> Resolved:
    """The run configuration the flags, file and --set describe, checked against the plugins."""
    config, cli_params = build_config(
        base_config(args), settings=flag_settings(args), plugin_params=plugin_params(args)
    )
    return resolve(config, registry, cli_params)


def load_registry(args: argparse.Namespace, err: Console) -> Registry:
    """The plugins minus `-p no:NAME`; each plugin that failed to load is one warning line on `err`."""
    with ending_at_once():  # plugins import third-party code, which may swallow a KeyboardInterrupt
        registry = load_plugins(blocked=parse_blocked(args.plugin_options))
    for problem in registry.problems:
        err.print(f"harness: warning: {problem}", markup=False)
    return registry


@functools.cache
def error_console() -> Console:
    """The stderr console of errors, warnings and status lines (built once; it writes to the current
    sys.stderr at each print)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def wide_console() -> Console:
    """The stdout console: the terminal's width; piped, `COLUMNS` when it is set (rich reads it), else 200
    columns, so wide tables are not squashed into 80 when output goes to a file."""
    console = Console(highlight=False)
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(highlight=False, width=200)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, allow_nan=False) + "\n")


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric with `digits` decimals; – for a missing or NaN value."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def add_ensemble_options(p: argparse.ArgumentParser) -> None:
    """The positional runs (one, or several for an ensemble), --tta and --weights of predict and evaluate."""
    p.add_argument(
        "run_id",
        nargs="+",
        metavar="RUN",
        help="run id (a unique prefix is enough), or a configuration hash (or prefix): all its finished "
        "runs; several: their ensemble (softmax probabilities averaged)",
    )
    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="none",
        help="test-time augmentation: flips (identity, horizontal, vertical, 180° turn) or d4 (also the "
        "90° turns and transposes, on square frames only); probabilities averaged. Default none",
    )
    p.add_argument(
        "--weights",
        type=weights_list,
        default=None,
        metavar="W1,W2,...",
        help="ensemble weight per run, in the order the runs are listed (a configuration counts its runs "
        "oldest first); default equal",
    )


def weights_list(text: str) -> list[float]:
    """`0.5,0.3,0.2` -> [0.5, 0.3, 0.2] (argparse reports a bad value in one line)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
