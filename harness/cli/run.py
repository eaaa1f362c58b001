"""`harness run`: train one configuration and record it (or `--resume` a stopped run); print the result."""

from __future__ import annotations

import argparse
import os
import traceback

from pydantic import BaseModel

from harness import api
from harness.cli.options import (
    EXIT_FAILED,
    add_common,
    add_config_options,
    add_log_options,
    error_console,
    fmt,
    load_registry,
    print_json,
    resolved_config,
)
from harness.config import PluginChoice, RunConfig
from harness.errors import HarnessError
from harness.store import resolve_store_path
from harness.sweep.plan import fold_list, with_seed_fold
from harness.training.distributed import is_rank_zero
from harness.training.run import OutOfMemory, execute

# What `run --resume` refuses: anything that would change the stored configuration.
CONFIG_FLAGS = {
    "arch": "--arch",
    "loss": "--loss",
    "balancer": "--balancer",
    "arch_param": "--arch-param",
    "loss_param": "--loss-param",
    "balancer_param": "--balancer-param",
    "data_param": "--data-param",
    "data": "--data",
    "config": "--config",
    "settings": "--set",
    "seed": "--seed",
    "limit": "--limit",
    "batch_size": "--batch-size",
    "max_minutes": "--max-minutes",
    "log": "--log",
    "log_dir": "--log-dir",
    "folds": "--folds",
    "fold": "--fold",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="train and record one run",
        description="Train one configuration and record it.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    add_config_options(p)
    add_log_options(p)
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


def run(args: argparse.Namespace) -> int:
    err = error_console()
    registry = load_registry(args, err)
    store_path = resolve_store_path(args.store)
    point = None
    if args.resume:
        from harness.training.checkpoints import plan_resume

        refuse_config_flags(args)
        resolved, point = plan_resume(
            store_path, args.resume, registry, epochs=args.epochs, device=args.device
        )
    else:
        resolved = resolved_config(args, registry)
    code, folds, printed = 0, fold_list(resolved.config), []
    for fold in folds:  # `--folds K` alone: the K folds, one run each, one after another
        one = with_seed_fold(resolved, resolved.config.seed, fold)
        code = max(code, run_one(args, one, registry, store_path, point, printed if len(folds) > 1 else None))
    if printed:  # several folds: one JSON list of their results
        print_json(printed)
    return code


def run_one(args: argparse.Namespace, resolved, registry, store_path, point, collect=None) -> int:
    """Train and record one run (one fold of a fold-trained configuration) and print its result (JSON:
    appended to `collect` when given)."""
    err = error_console()
    try:
        result = execute(resolved, store_path, registry, progress=not args.no_progress, resume=point)
    except (KeyboardInterrupt, HarnessError):
        raise
    except Exception as exc:  # a bug or a crash in training: the run (if it started) is recorded as failed
        if os.environ.get("HARNESS_DEBUG"):
            traceback.print_exc()
        text = str(exc) if isinstance(exc, OutOfMemory) else f"{type(exc).__name__}: {exc}"
        err.print(f"harness: run failed: {text}", markup=False)
        return EXIT_FAILED
    if not is_rank_zero():  # torchrun: every rank has the same result; rank 0 alone prints it
        return 0 if result.status == "finished" else EXIT_FAILED
    if args.format == "json":
        payload = {k: v for k, v in vars(result).items() if k != "checkpoint"}
        payload["checkpoint"] = str(result.checkpoint)
        if collect is None:
            print_json(payload)
        else:
            collect.append(payload)
    else:
        print_result(result)
    return 0 if result.status == "finished" else EXIT_FAILED


def refuse_config_flags(args: argparse.Namespace) -> None:
    """`--resume` with a flag that would change the stored configuration is bad input."""
    given = [flag for name, flag in CONFIG_FLAGS.items() if getattr(args, name, None) not in (None, [])]
    if given:
        raise HarnessError(
            f"--resume continues run {args.resume} with its stored config; {', '.join(given)} would change "
            "it (only --epochs and --device go with --resume): start a new run instead"
        )


def print_result(result: api.RunResult) -> None:
    metrics = result.metrics or {}
    per_class = ", ".join(f"{name} {fmt(v, 3)}" for name, v in (metrics.get("iou") or {}).items())
    data = result.config.get("data") or {}
    fold = f" on fold {data['fold']} of {data['folds']}" if data.get("fold") is not None else ""
    print(
        f"run {result.run_id} {result.status}: val mIoU {fmt(metrics.get('miou_an2dl'))} "
        f"(fg {fmt(metrics.get('miou_fg'))}) at epoch {result.best_epoch}/{result.epochs}{fold}"
    )
    print(f"  per-class IoU: {per_class}")
    fitted = metrics.get("fitted") or {}
    if "recall" in fitted:  # an architecture fitted its anchors to the training instances (maskrcnn)
        before = f"{fmt(fitted['recall_before'], 3)} before fitting, " if "recall_before" in fitted else ""
        print(
            f"  anchors {fitted.get('anchors')}: recall at IoU {fitted.get('iou')} "
            f"{before}{fmt(fitted['recall'], 3)} ({fitted.get('instances')} instances)"
        )
    print(
        f"  train {fmt(result.train_img_s, 1)} img/s, wall {result.wall_time:.1f} s, "
        f"checkpoint {result.checkpoint if result.checkpoint.exists() else 'none'}"
    )
    if result.error:
        print(f"  {result.status}: {result.error}")


def settings_help() -> str:
    """Every `--set` key with its default and description, generated from the models (for `--help`)."""
    lines = ["settings (--set KEY=VALUE or the TOML file):"]
    for name, field in RunConfig.model_fields.items():
        annotation = field.annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and annotation is not PluginChoice
        ):
            for key, sub in annotation.model_fields.items():
                default = sub.get_default(call_default_factory=True)
                lines.append(f"  {name}.{key} = {default!r}  {sub.description or ''}")
        elif annotation is PluginChoice:
            lines.append(f"  {name}.name, {name}.params.KEY  the {name} plugin and its parameters")
        else:
            lines.append(
                f"  {name} = {field.get_default(call_default_factory=True)!r}  {field.description or ''}"
            )
    return "\n".join(lines)
