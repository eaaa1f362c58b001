"""The `harness` command: a thin argparse layer over harness.api and the plugin registry.

Bad input (flags, files, configs, plugin parameters) prints one line on stderr and exits 2. Ctrl-C
(SIGINT) and SIGTERM record the run in progress as 'interrupted', print one line and exit 130 and 143.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.config import settings_help
from harness.errors import HarnessError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same path records the run."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the command runs, SIGTERM (kill, a scheduler's stop, torchrun) raises `Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise HarnessError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", metavar="PATH", help="run store (SQLite); default $HARNESS_STORE or runs/harness.sqlite"
    )
    _plugin_option(parser)


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        dest="plugin_options",
        action="append",
        default=[],
        metavar="no:NAME",
        help="disable a plugin by name (repeatable), e.g. -p no:my_blocks",
    )


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="train and record one run",
        description="Train one configuration and record it.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    _config_options(p)
    p.add_argument(
        "--max-minutes", type=float, help="time budget; stops cleanly, still evaluates and records"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--format", choices=("text", "json"), default="text", help="how to print the result")
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a stopped run (interrupted, killed, failed) from its last checkpoint under the same "
        "id, with its stored config: epochs, optimizer, LR schedule and early stopping carry on. Only "
        "--epochs (a new limit; needed to extend a finished run) and --device may be given with it",
    )


def add_set_option(p: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--set SECTION.KEY=VALUE` config override, collected in `args.settings`."""
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help_text
    )


def _config_options(p: argparse.ArgumentParser, lists: bool = False) -> None:
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
    for section in ("arch", "loss", "balancer", "data"):
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


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every combination of architectures, losses, balancers and seeds",
        description="Train the grid --arch x --loss x --balancer x --seeds (or the [[runs]] list of a "
        "--config file), each run like `harness run`, into one store. Resumable: configurations already "
        "finished in the store (same config hash and seed) are skipped, so rerunning a killed sweep "
        "trains only what is missing. A failing run does not stop the sweep.",
        epilog="Sweep file: a RunConfig TOML (the base of every run) with an optional [[runs]] list; each "
        "[[runs]] table overlays the base, e.g.\n\n  [train]\n  epochs = 20\n  [[runs]]\n  arch = "
        '{ name = "unet" }\n  [[runs]]\n  arch = { name = "unetpp", params = { deep_supervision = true } }\n',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    _config_options(p, lists=True)
    p.add_argument("--seeds", type=int, help="run each configuration with N seeds (seed, seed+1, ...)")
    p.add_argument(
        "--max-minutes-per-run",
        dest="max_minutes",
        type=float,
        help="time budget of each run (train.max_minutes)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan (what runs, what is skipped) and stop"
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default): one run after another here; ray: each run a Ray task (pip install "
        "'harness[ray]')",
    )
    p.add_argument("--address", help="Ray cluster to join (with --executor ray); default: start a local one")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, one line per run")
    p.add_argument("--format", choices=("text", "json"), default="text", help="how to print the summary")


def _add_list(sub) -> None:
    p = sub.add_parser(
        "list", help="list installed plugins", description="List every loaded plugin and its parameters."
    )
    _common(p)
    p.add_argument("--kind", choices=("architecture", "block", "loss", "balancer", "dataset"))
    p.add_argument("--format", choices=("table", "json"), default="table")


def _add_leaderboard(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank recorded runs",
        description="Rank configurations by validation mIoU: the runs of one configuration across seeds "
        "are one row (mean ± std, n). `--by arch` keeps the best configuration per architecture.",
    )
    _common(p)
    p.add_argument(
        "--format",
        choices=("table", "markdown", "csv", "json", "html"),
        default="table",
        help="table (default), markdown, csv, json or html (one self-contained page)",
    )
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="an2dl (challenge) or fg mIoU")
    p.add_argument(
        "--by",
        choices=("config", "arch", "run"),
        default="config",
        help="config (default): one row per configuration; arch: the best configuration of "
        "each architecture (the report's Table 1); run: one row per run",
    )
    p.add_argument(
        "--status",
        default="finished",
        choices=("finished", "failed", "interrupted", "diverged", "running", "all"),
        help="finished (default), failed, interrupted, diverged, running or all",
    )
    p.add_argument("--arch", help="only this architecture")
    p.add_argument("--loss", help="only this loss")
    p.add_argument("--balancer", help="only this balancer")
    p.add_argument("--since", help="only runs started since an age (30m, 12h, 3d, 2w) or a date (2026-11-24)")
    p.add_argument("--top", type=int, help="show only the first N rows")


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="write a submission CSV",
        description="Predict a dataset's test_set with a run's best checkpoint.",
    )
    _common(p)
    p.add_argument("run_id", help="run id (a unique prefix is enough)")
    p.add_argument("--data", required=True, help="AN2DL .npz (its test_set) or dataset name")
    p.add_argument("--out", required=True, help="CSV path: header id,0..H*W-1, one row per test image")
    p.add_argument("--device", default="auto")


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a run on labelled data",
        description="Score a run on the training_set of a labelled npz.",
    )
    _common(p)
    p.add_argument("run_id", help="run id (a unique prefix is enough)")
    p.add_argument("--data", required=True, help="labelled AN2DL .npz or dataset name")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--device", default="auto")


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="is B better than A? paired bootstrap of the mIoU difference",
        description="Paired bootstrap over validation images of mIoU(B) - mIoU(A). A and B are each a run id "
        "(or unique prefix) or a config hash prefix (the leaderboard's config column: all finished runs of "
        "that configuration, paired with the other side by seed). Two runs pair only when they were "
        "validated on the same images (same data, split and seed).",
    )
    _common(p)
    p.add_argument("a", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("b", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="an2dl (challenge) or fg mIoU")
    p.add_argument("--format", choices=("table", "json"), default="table")


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="figures and one self-contained HTML page for the top runs",
        description="Write learning curves and per-class IoU of the top N finished runs, the best run's "
        "confusion matrix and prediction overlays (PNGs), and index.html with all of them embedded.",
    )
    _common(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and index.html")
    p.add_argument("--top", type=int, default=5, help="how many runs to show (default 5)")
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="rank by an2dl or fg mIoU")
    p.add_argument("--arch", help="only this architecture")
    p.add_argument("--loss", help="only this loss")
    p.add_argument("--balancer", help="only this balancer")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for the overlays")


def _add_check_plugin(sub) -> None:
    p = sub.add_parser(
        "check-plugin",
        help="run the conformance kit on a plugin",
        description="Run the conformance kit (the checks CI runs on built-ins) on any installed plugin.",
    )
    _common(p)
    p.add_argument("name", help="plugin name, e.g. unet (see `harness list`)")
    p.add_argument(
        "--kind",
        choices=("architecture", "block", "loss", "balancer"),
        help="when a name exists in several kinds",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")


def _add_data(sub) -> None:
    p = sub.add_parser(
        "data",
        help="inspect a dataset, preview what the model sees",
        description="Look at the data before training on it.",
    )
    inner = p.add_subparsers(dest="data_command", required=True, parser_class=Parser, metavar="SUBCOMMAND")
    look = inner.add_parser(
        "inspect",
        help="class shares, duplicate masks and likely outliers",
        description="Class pixel shares, images per class, groups of images sharing one mask, and outliers: "
        "large groups of different images sharing one mask with several classes (the AN2DL 'aliens'). "
        "`--set data.clean=outliers` drops them in a run.",
    )
    _common(look)
    look.add_argument("file", help="AN2DL .npz path or dataset name")
    look.add_argument("--format", choices=("table", "json"), default="table")
    look.add_argument(
        "--sheet", metavar="PNG", help="also write a contact sheet of the outliers (or duplicates)"
    )
    look.add_argument(
        "--min-group", type=int, default=10, help="smallest shared-mask group flagged (default 10)"
    )
    view = inner.add_parser(
        "preview",
        help="contact sheet of training images after balancing and augmentation",
        description="Write a contact sheet (image | mask) of what the model will see in an epoch: the "
        "training split after the balancer and the augmentation. Takes the same options as `harness run`.",
    )
    _common(view)
    _config_options(view)
    view.add_argument("--out", required=True, metavar="PNG", help="where to write the sheet")
    view.add_argument("--count", type=int, default=32, help="images on the sheet (1-64, default 32)")
    view.add_argument("--epoch", type=int, default=1, help="which epoch's augmentation to show (default 1)")


def _add_bench(sub) -> None:
    from harness.analysis.bench import add_arguments

    p = sub.add_parser(
        "bench",
        help="benchmark the training path against a naive loop",
        description="Train each architecture with a naive notebook loop and with the harness's own path, "
        "side by side in one process; print img/s, speed-up, inference img/s, MFU, params, GFLOPs, memory.",
    )
    _plugin_option(p)  # no --store: the benchmark records nothing
    add_arguments(p)


def build_parser() -> Parser:
    parser = Parser(prog="harness", description="Plugin-based benchmark harness for semantic segmentation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in (
        _add_run,
        _add_sweep,
        _add_list,
        _add_leaderboard,
        _add_predict,
        _add_evaluate,
        _add_compare,
        _add_report,
        _add_check_plugin,
        _add_data,
        _add_bench,
    ):
        add(sub)
    return parser


def _bench(args: argparse.Namespace) -> int:
    from harness.analysis.bench import command

    return command(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    args = None
    try:
        with _sigterm_interrupts():
            args = build_parser().parse_args(argv)
            from harness.cli import commands

            handler = {"list": commands.list_, "check-plugin": commands.check_plugin, "bench": _bench}.get(
                args.command
            ) or getattr(commands, args.command)
            return handler(args)
    except HarnessError as exc:
        err.print(f"harness: error: {exc}", markup=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        err.print(_interrupted_line(exc, getattr(args, "command", None)), markup=False)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _interrupted_line(exc: KeyboardInterrupt, command: str | None) -> str:
    """One line: what stopped us, what was recorded, how to go on."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    run_id = getattr(exc, "run_id", None)
    if command == "sweep":
        recorded = f"run {run_id} recorded as 'interrupted'; " if run_id else ""
        return f"harness: sweep {what}: {recorded}rerun the same command to train what is missing"
    if run_id:
        return (
            f"harness: {what}: run {run_id} recorded as 'interrupted'; "
            f"continue it with `harness run --resume {run_id}`"
        )
    return f"harness: {what}"


if __name__ == "__main__":
    raise SystemExit(main())
