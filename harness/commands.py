"""What each `harness` subcommand does with its parsed arguments; printing lives here, work in harness.api."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import api
from harness.config import build_config, read_toml, resolve
from harness.cost import count_params, forward_gflops
from harness.errors import HarnessError
from harness.parsing import did_you_mean
from harness.plugins import Registry, load_plugins, parse_blocked
from harness.train import execute
from leaderboard.store import resolve_store_path
from leaderboard.table import leaderboard_rows, render

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
}


def _registry(args: argparse.Namespace) -> Registry:
    registry = load_plugins(blocked=parse_blocked(args.plugin_options))
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in registry.problems:
        err.print(f"harness: warning: {problem}", markup=False)
    return registry


def _wide_console() -> Console:
    """A console that does not squash wide tables into 80 columns when output goes to a file or pipe."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, allow_nan=False) + "\n")


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
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


def _resolved(args: argparse.Namespace, registry: Registry):
    """The run configuration the flags, file and --set describe, checked against the plugins."""
    settings = [
        f"{path}={getattr(args, flag)}"
        for flag, path in FLAG_SETTINGS.items()
        if getattr(args, flag, None) is not None
    ]
    plugin_params = {s: getattr(args, f"{s}_param") for s in ("arch", "loss", "balancer", "data")}
    config, cli_params = build_config(
        _base_config(args), settings=settings + args.settings, plugin_params=plugin_params
    )
    return resolve(config, registry, cli_params)


def run(args: argparse.Namespace) -> int:
    registry = _registry(args)
    resolved = _resolved(args, registry)
    try:
        result = execute(resolved, resolve_store_path(args.store), registry, progress=not args.no_progress)
    except (KeyboardInterrupt, HarnessError):
        raise
    except Exception as exc:  # a bug or a crash in training: the run (if it started) is recorded as failed
        if os.environ.get("HARNESS_DEBUG"):
            traceback.print_exc()
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"harness: run failed: {type(exc).__name__}: {exc}", markup=False)
        return EXIT_FAILED
    if args.format == "json":
        _print_json(
            {k: v for k, v in vars(result).items() if k != "checkpoint"}
            | {"checkpoint": str(result.checkpoint)}
        )
    else:
        _print_result(result)
    return 0 if result.status == "finished" else EXIT_FAILED


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _print_result(result: api.RunResult) -> None:
    metrics = result.metrics or {}
    per_class = ", ".join(f"{name} {_fmt(v, 3)}" for name, v in (metrics.get("iou") or {}).items())
    print(
        f"run {result.run_id} {result.status}: val mIoU {_fmt(metrics.get('miou_an2dl'))} "
        f"(fg {_fmt(metrics.get('miou_fg'))}) at epoch {result.best_epoch}/{result.epochs}"
    )
    print(f"  per-class IoU: {per_class}")
    print(
        f"  train {_fmt(result.train_img_s, 1)} img/s, wall {result.wall_time:.1f} s, "
        f"checkpoint {result.checkpoint}"
    )


def _params_info(spec) -> dict[str, dict[str, Any]]:
    info = {}
    for name, field in spec.params.model_fields.items():
        annotation = field.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        info[name] = {
            "type": type_name,
            "default": field.get_default(call_default_factory=True),
            "description": field.description or "",
        }
    return info


def _plugin_rows(registry: Registry, kind: str | None) -> list[dict[str, Any]]:
    rows = []
    for entry in registry.all(kind):
        spec = entry.spec
        row = {
            "kind": spec.kind,
            "name": spec.name,
            "summary": spec.summary,
            "provider": entry.provider + (" (built-in)" if entry.builtin else ""),
            "params": _params_info(spec),
        }
        if spec.kind == "architecture":
            row.update(_architecture_cost(spec))
        rows.append(row)
    return rows


def _architecture_cost(spec) -> dict[str, Any]:
    try:
        model = spec.build(spec.parse_params(), in_channels=1, num_classes=5)
        return {"params_count": count_params(model), "gflops": round(forward_gflops(model), 4)}
    except Exception as exc:  # a plugin's build bug must not break `harness list`
        return {"params_count": None, "gflops": None, "cost_error": f"{type(exc).__name__}: {exc}"}


def list_(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = _plugin_rows(registry, args.kind)
    if args.format == "json":
        _print_json(rows)
        return 0
    table = Table(title="harness plugins")
    for column in ("kind", "name", "summary", "provider", "params (default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        params = ", ".join(f"{k}={v['default']!r}" for k, v in row["params"].items()) or "–"
        if row["kind"] == "architecture" and row.get("params_count") is not None:
            params += f"\n[{row['params_count'] / 1e6:.2f} M params, {row['gflops']:.2f} GFLOPs at 1x64x128]"
        table.add_row(row["kind"], row["name"], row["summary"], row["provider"], params)
    _wide_console().print(table)
    return 0


def leaderboard(args: argparse.Namespace) -> int:
    path = resolve_store_path(args.store)
    status = None if args.status == "all" else args.status
    runs = api.runs(path, status, args.arch, args.loss, args.balancer)
    rows = leaderboard_rows(runs, args.metric)
    if not rows and args.format == "table":
        print(f"no {args.status if status else ''} runs in {path} yet: try `harness run`".replace("  ", " "))
        return 0
    class_names = runs[0]["class_names"] if runs else []
    text = render(rows, args.format, class_names, console=_wide_console())
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def predict(args: argparse.Namespace) -> int:
    registry = _registry(args)
    masks = api.predict(
        args.run_id, args.data, out=args.out, store=args.store, device=args.device, plugins=registry
    )
    print(f"wrote {args.out}: {len(masks)} test images, {masks.shape[1]}x{masks.shape[2]} masks")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    registry = _registry(args)
    result = api.evaluate(args.run_id, args.data, store=args.store, device=args.device, plugins=registry)
    if args.format == "json":
        _print_json(result)
        return 0
    table = Table(title=f"run {result['run_id']} on {result['data']} ({result['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mIoU (an2dl)", _fmt(result["miou_an2dl"]))
    table.add_row("mIoU (fg)", _fmt(result["miou_fg"]))
    table.add_row("pixel accuracy", _fmt(result["pixel_accuracy"]))
    for name, value in result["iou"].items():
        table.add_row(f"IoU {name}", _fmt(value))
    _wide_console().print(table)
    return 0


def check_plugin(args: argparse.Namespace) -> int:
    from harness.conformance import CHECKS_BY_KIND, run_checks
    from harness.errors import PluginError

    registry = _registry(args)
    kinds = [args.kind] if args.kind else list(CHECKS_BY_KIND)
    specs = [registry.get(kind, args.name) for kind in kinds if args.name in registry.specs[kind]]
    if not specs:
        if args.kind:
            registry.get(args.kind, args.name)  # raises with a did-you-mean
        names = sorted({e.spec.name for kind in kinds for e in registry.all(kind)})
        hint = did_you_mean(args.name, names)
        raise PluginError(
            f"no architecture, loss or balancer named '{args.name}'{hint} (choices: {', '.join(names)})"
        )
    results = [
        {"kind": spec.kind, "name": spec.name, "check": check, "passed": passed, "note": note}
        for spec in specs
        for check, passed, note in run_checks(spec)
    ]
    if args.format == "json":
        _print_json(results)
    else:
        table = Table(title=f"conformance of '{args.name}'")
        for column in ("kind", "check", "result", "note"):
            table.add_column(column, overflow="fold")
        for row in results:
            verdict = "[green]pass[/]" if row["passed"] else "[red]FAIL[/]"
            table.add_row(row["kind"], row["check"], verdict, row["note"])
        _wide_console().print(table)
    return 0 if all(row["passed"] for row in results) else EXIT_FAILED


def data(args: argparse.Namespace) -> int:
    return {"inspect": data_inspect, "preview": data_preview}[args.data_command](args)


def data_inspect(args: argparse.Namespace) -> int:
    from harness.inspect import inspect
    from harness.sheets import outlier_sheet

    registry = _registry(args)
    dataset = api.load_source(args.file, 5, registry)
    report = inspect(dataset, min_group=args.min_group)
    if args.sheet:
        outlier_sheet(dataset, report, Path(args.sheet))
    if args.format == "json":
        _print_json(report)
        return 0
    console = _wide_console()
    classes = Table(title=f"{dataset.source}: {len(dataset)} images")
    for column in ("class", "pixel share", "images"):
        classes.add_column(column, justify="right" if column != "class" else "left")
    for name, row in report["classes"].items():
        classes.add_row(name, f"{row['pixel_share']:.2%}", str(row["images"]))
    console.print(classes)
    groups = report["duplicate_mask_groups"]
    console.print(
        f"{len(groups)} groups of images sharing one mask (largest: "
        f"{', '.join(str(g['size']) for g in groups[:8]) or 'none'}); "
        f"{len(report['outliers'])} outliers (groups of >= {args.min_group} different images sharing a "
        "mask with several classes)" + (f"; sheet written to {args.sheet}" if args.sheet else ""),
        markup=False,
    )
    return 0


def data_preview(args: argparse.Namespace) -> int:
    import numpy as np

    from harness.sheets import contact_sheet
    from harness.train import epoch_view, prepare

    if not 1 <= args.count <= 64:
        raise HarnessError(f"--count must be between 1 and 64, got {args.count}")
    registry = _registry(args)
    resolved = _resolved(args, registry)
    prep = prepare(resolved)
    images, masks, _ = epoch_view(resolved, prep, args.epoch)
    rng = np.random.default_rng(resolved.config.seed)
    rows = np.sort(rng.choice(len(images), size=min(args.count, len(images)), replace=False))
    strong = prep.train_strong
    titles = [f"#{i}" + (" strong" if strong is not None and bool(strong[i]) else "") for i in rows]
    out = contact_sheet(images[rows], masks[rows], Path(args.out), titles=titles)
    print(f"wrote {out}: {len(rows)} of {len(images)} training images as epoch {args.epoch} shows them")
    return 0
