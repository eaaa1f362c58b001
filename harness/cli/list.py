"""`harness list`: every loaded plugin, its provider and parameters (architectures with their cost)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from harness.cli.options import add_common, error_console, load_registry, print_json, wide_console
from harness.inference.cost import count_params, forward_gflops
from harness.plugins import Registry


def add_parser(sub) -> None:
    p = sub.add_parser(
        "list", help="list installed plugins", description="List every loaded plugin and its parameters."
    )
    add_common(p)
    p.add_argument("--kind", choices=("architecture", "block", "loss", "balancer", "dataset"))
    p.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    rows = plugin_rows(registry, args.kind)
    if args.format == "json":
        print_json(rows)
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
    wide_console().print(table)
    return 0


def plugin_rows(registry: Registry, kind: str | None) -> list[dict[str, Any]]:
    """One JSON-ready row per plugin (of `kind`, or all): name, summary, provider, parameters, cost."""
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
            row.update(_architecture_cost(spec, registry))
        if spec.kind == "block":
            row["roles"] = sorted(spec.roles)
        rows.append(row)
    return rows


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


def _architecture_cost(spec, registry: Registry) -> dict[str, Any]:
    try:
        model = spec.build(spec.parse_params(registry=registry), in_channels=1, num_classes=5)
        return {"params_count": count_params(model), "gflops": round(forward_gflops(model), 4)}
    except Exception as exc:  # a plugin's build bug must not break `harness list`
        return {"params_count": None, "gflops": None, "cost_error": f"{type(exc).__name__}: {exc}"}
