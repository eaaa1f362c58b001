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
from harness.errors import HarnessError
from harness.inference.cost import count_params, forward_gflops
from harness.parsing import did_you_mean, parse_since
from harness.plugins import Registry, load_plugins, parse_blocked
from harness.store.runs import resolve_store_path
from harness.training.distributed import is_rank_zero
from harness.training.loop import OutOfMemory, execute
from leaderboard.table import best_per_arch, display_table, group_rows, leaderboard_rows, render

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
    config, cli_params = build_config(
        _base_config(args), settings=settings + args.settings, plugin_params=_plugin_params(args)
    )
    return resolve(config, registry, cli_params)


def run(args: argparse.Namespace) -> int:
    registry = _registry(args)
    store_path = resolve_store_path(args.store)
    point = None
    if args.resume:
        from harness.training.resume import plan_resume

        _refuse_config_flags(args)
        resolved, point = plan_resume(
            store_path, args.resume, registry, epochs=args.epochs, device=args.device
        )
    else:
        resolved = _resolved(args, registry)
    try:
        result = execute(resolved, store_path, registry, progress=not args.no_progress, resume=point)
    except (KeyboardInterrupt, HarnessError):
        raise
    except Exception as exc:  # a bug or a crash in training: the run (if it started) is recorded as failed
        if os.environ.get("HARNESS_DEBUG"):
            traceback.print_exc()
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        text = str(exc) if isinstance(exc, OutOfMemory) else f"{type(exc).__name__}: {exc}"
        err.print(f"harness: run failed: {text}", markup=False)
        return EXIT_FAILED
    if not is_rank_zero():  # torchrun: every rank has the same result; rank 0 alone prints it
        return 0 if result.status == "finished" else EXIT_FAILED
    if args.format == "json":
        _print_json(
            {k: v for k, v in vars(result).items() if k != "checkpoint"}
            | {"checkpoint": str(result.checkpoint)}
        )
    else:
        _print_result(result)
    return 0 if result.status == "finished" else EXIT_FAILED


# What `run --resume` refuses: anything that would change the stored configuration.
_CONFIG_FLAGS = {
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
}


def _refuse_config_flags(args: argparse.Namespace) -> None:
    given = [flag for name, flag in _CONFIG_FLAGS.items() if getattr(args, name, None) not in (None, [])]
    if given:
        raise HarnessError(
            f"--resume continues run {args.resume} with its stored config; {', '.join(given)} would change "
            "it (only --epochs and --device go with --resume): start a new run instead"
        )


def _plugin_params(args: argparse.Namespace) -> dict[str, list[str]]:
    return {s: getattr(args, f"{s}_param") for s in ("arch", "loss", "balancer", "data")}


def sweep(args: argparse.Namespace) -> int:
    from harness.sweep import plan as sweeping
    from harness.training.progress import SweepLines, SweepProgress

    registry = _registry(args)
    base = read_toml(args.config) if args.config else {}  # a RunConfig, optionally with [[runs]]
    settings = [
        f"{path}={getattr(args, flag)}"
        for flag, path in FLAG_SETTINGS.items()
        if getattr(args, flag, None) is not None
    ]
    runs = sweeping.plan(
        base,
        registry,
        archs=sweeping.split_list(args.arch, "--arch"),
        losses=sweeping.split_list(args.loss, "--loss"),
        balancers=sweeping.split_list(args.balancer, "--balancer"),
        seeds=args.seeds,
        settings=settings + args.settings,
        plugin_params=_plugin_params(args),
    )
    store_path = resolve_store_path(args.store)
    if args.address and args.executor != "ray":
        raise HarnessError("--address joins a Ray cluster; it needs --executor ray")
    if args.dry_run:
        return _print_plan(sweeping.describe_plan(runs, sweeping.done_keys(store_path)), args.format)
    executor = sweeping.local_executor
    if args.executor == "ray":
        from harness.sweep.ray_executor import ray_executor

        executor = ray_executor(args.address)
    json_out = args.format == "json"
    view = SweepLines(stderr=json_out) if args.no_progress or json_out else SweepProgress()
    with view:  # Ctrl-C and SIGTERM end in cli.main, which says how to go on
        result = sweeping.run_sweep(runs, store_path, registry, executor=executor, progress=view)
    _print_sweep(result, store_path, args.format)
    return EXIT_FAILED if result.failures else 0


def _print_plan(rows: list[dict[str, Any]], fmt: str) -> int:
    if fmt == "json":
        _print_json(rows)
        return 0
    table = Table(title=f"sweep plan: {sum(r['action'] == 'run' for r in rows)} to run, {len(rows)} in all")
    columns = ("#", "arch", "arch params", "loss", "balancer", "seed", "config", "epochs", "max minutes")
    for column in (*columns, "action"):
        table.add_column(column)
    for number, row in enumerate(rows, start=1):
        minutes = "–" if row["max_minutes"] is None else f"{row['max_minutes']:g}"
        cells = [row["arch"], row["arch_params"] or "–", row["loss"], row["balancer"], str(row["seed"])]
        cells.append(row["config"])
        table.add_row(str(number), *cells, str(row["epochs"]), minutes, row["action"])
    _wide_console().print(table)
    return 0


def _print_sweep(result, store_path: Path, fmt: str) -> None:
    outcomes = [
        {
            "arch": o.planned.config.arch.name,
            "loss": o.planned.config.loss.name,
            "balancer": o.planned.config.balancer.name,
            "seed": o.planned.config.seed,
            "config": o.planned.resolved.hash[:8],
            "status": o.status,
            "run_id": o.run_id,
            "miou": o.miou,
            "seconds": round(o.seconds, 1),
            "error": o.error,
        }
        for o in result.outcomes
    ]
    if fmt == "json":
        _print_json(outcomes)
        return
    counts = ", ".join(
        f"{result.count(status)} {status}"
        for status in ("finished", "skipped", "failed", "interrupted", "diverged")
        if result.count(status)
    )
    print(f"sweep done: {counts or 'nothing to do'} (store {store_path})")
    for failure in result.failures:
        print(f"  {failure.status}: {failure.planned.label}: {failure.error or 'no error message'}")
    print(f"see the ranking: harness leaderboard --store {store_path}")


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
        f"checkpoint {result.checkpoint if result.checkpoint.exists() else 'none'}"
    )
    if result.error:
        print(f"  {result.status}: {result.error}")


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
        if spec.kind == "block":
            row["roles"] = sorted(spec.roles)
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
        if row["kind"] == "block":
            params += f"\nroles: {', '.join(row['roles'])}"
        table.add_row(row["kind"], row["name"], row["summary"], row["provider"], params)
    _wide_console().print(table)
    return 0


def leaderboard(args: argparse.Namespace) -> int:
    path = resolve_store_path(args.store)
    status = None if args.status == "all" else args.status
    since = parse_since(args.since) if args.since else None
    if args.top is not None and args.top < 1:
        raise HarnessError(f"--top must be at least 1, got {args.top}")
    runs = api.runs(path, status, args.arch, args.loss, args.balancer, since)
    rows = leaderboard_rows(runs, args.metric)
    if args.by != "run":
        rows = group_rows(rows)
    if args.by == "arch":
        rows = best_per_arch(rows)
    rows = rows[: args.top] if args.top else rows
    if not rows and args.format == "table":
        print(f"no {args.status if status else ''} runs in {path} yet: try `harness run`".replace("  ", " "))
        return 0
    class_names = runs[0]["class_names"] if runs else []
    title = f"harness leaderboard: {path} ({args.metric} mIoU, by {args.by})"
    if args.format == "html":  # the table plus the report's figures, in one page to mail
        from harness.analysis.report import leaderboard_page

        headers, cells = display_table(rows, class_names)
        registry = _registry(args)
        text = leaderboard_page(title, headers, cells, store=path, metric=args.metric, plugins=registry)
    else:
        text = render(rows, args.format, class_names, console=_wide_console(), title=title)
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


def compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import CONFIDENCE, compare_store

    result = compare_store(
        resolve_store_path(args.store),
        args.a,
        args.b,
        resamples=args.resamples,
        seed=args.seed,
        metric=args.metric,
    )
    if args.format == "json":
        _print_json(result.to_dict())
        return 0
    table = Table(title=f"paired bootstrap of mIoU ({result.metric}): B − A", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    seeds = ", ".join(str(s) for s in result.seeds)
    table.add_row("A", f"{result.a_kind} {result.a}")
    table.add_row("B", f"{result.b_kind} {result.b}")
    table.add_row("pairs", f"{result.pairs} (seed{'s' * (result.pairs != 1)} {seeds})")
    table.add_row("validation images", f"{result.images} (resampled within each pair)")
    table.add_row("mIoU A / B", f"{result.a_miou:.4f} / {result.b_miou:.4f}")
    table.add_row("B − A", f"{result.difference:+.4f}")
    table.add_row(f"{CONFIDENCE:.0%} interval", f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]")
    table.add_row("resamples", f"{result.resamples} (seed {result.seed})")
    _wide_console().print(table)
    if result.excludes_zero:
        better = "B" if result.difference > 0 else "A"
        print(f"the interval excludes zero: {better} is better on these validation images")
    else:
        print("the interval contains zero: no clear difference on these validation images")
    return 0


def report(args: argparse.Namespace) -> int:
    from harness.analysis.report import build_report

    registry = _registry(args)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    written = build_report(
        args.out,
        store=args.store,
        top=args.top,
        metric=args.metric,
        arch=args.arch,
        loss=args.loss,
        balancer=args.balancer,
        plugins=registry,
        say=lambda line: err.print(line, markup=False),
        show_progress=not args.no_progress,
    )
    for path in written:
        print(path)
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
        raise PluginError(f"no {', '.join(kinds)} named '{args.name}'{hint} (choices: {', '.join(names)})")
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
    from harness.data.inspect import inspect
    from harness.data.sheets import outlier_sheet

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

    from harness.data.sheets import contact_sheet
    from harness.training.loop import augmented_view, prepare

    if not 1 <= args.count <= 64:
        raise HarnessError(f"--count must be between 1 and 64, got {args.count}")
    if args.epoch < 1:
        raise HarnessError(f"--epoch must be >= 1, got {args.epoch}")
    registry = _registry(args)
    resolved = _resolved(args, registry)
    prep = prepare(resolved)
    images, masks = augmented_view(resolved, prep, args.epoch)
    rng = np.random.default_rng(resolved.config.seed)
    rows = np.sort(rng.choice(len(images), size=min(args.count, len(images)), replace=False))
    strong = prep.train_strong
    titles = [f"#{i}" + (" strong" if strong is not None and bool(strong[i]) else "") for i in rows]
    out = contact_sheet(images[rows], masks[rows], Path(args.out), titles=titles)
    print(f"wrote {out}: {len(rows)} of {len(images)} training images as epoch {args.epoch} shows them")
    return 0
