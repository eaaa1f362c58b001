"""`harness list [NAME]`: every loaded plugin (kind, name, summary, provider, its parameters' names, the
cost of architectures), or one plugin in full: each parameter's type, default, bounds and description."""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

from rich.table import Table
from rich.text import Text

from harness.cli.options import add_common, error_console, load_registry, print_json, wide_console
from harness.errors import PluginError
from harness.inference.cost import count_params, forward_gflops
from harness.parsing import did_you_mean
from harness.plugins import Registry

KINDS = ("architecture", "block", "loss", "balancer", "dataset")
SHOWN_PARAMS = 6  # parameter names in the overview; `harness list NAME` shows them all
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "list",
        help="list installed plugins, or one in full",
        description="List every loaded plugin with its parameters; `harness list NAME` shows one plugin in "
        "full: each parameter's type, default, bounds and description.",
    )
    add_common(p)
    p.add_argument("name", nargs="?", help="one plugin to show in full (e.g. unet, se, combo)")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    rows = plugin_rows(registry, args.kind, args.name)
    if args.name is not None:
        return _show_one(rows, args)
    if args.format == "json":
        print_json(rows)
        return 0
    table = Table(title="harness plugins")
    table.add_column("kind", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("summary", ratio=3)
    table.add_column("provider", no_wrap=True)
    table.add_column("params", ratio=2)
    for row in rows:
        table.add_row(*(Text(cell) for cell in overview_cells(row)))
    console = wide_console()
    console.print(table)
    console.print("`harness list NAME` shows a plugin's parameters in full.", style="dim")
    return 0


def overview_cells(row: dict[str, Any]) -> list[str]:
    """The overview's cells of one plugin: parameter names only (the first few), the cost, block roles."""
    names = list(row["params"])
    params = ", ".join(names[:SHOWN_PARAMS]) or "–"
    if len(names) > SHOWN_PARAMS:
        params += f", +{len(names) - SHOWN_PARAMS} more"
    if row["kind"] == "architecture" and row.get("params_count") is not None:
        params += f"\n{row['params_count'] / 1e6:.2f} M params, {row['gflops']:.2f} GFLOPs"
    if row["kind"] == "block":
        params += f"\nroles: {', '.join(row['roles'])}"
    provider = "built-in" if row["builtin"] else row["provider"]
    return [row["kind"], row["name"], row["summary"], provider, params]


def _show_one(rows: list[dict[str, Any]], args: argparse.Namespace) -> int:
    if args.format == "json":
        print_json(rows)
        return 0
    console = wide_console()
    for index, row in enumerate(rows):
        if index:
            console.print()
        console.print(Text(f"{row['kind']} {row['name']}: {row['summary']}", style="bold"))
        console.print(Text(f"provider: {row['provider']}"))
        if row.get("params_count") is not None:
            console.print(Text(f"cost: {row['params_count'] / 1e6:.2f} M params, {row['gflops']:.2f} GFLOPs"))
        if row.get("roles"):
            console.print(Text(f"roles: {', '.join(row['roles'])}"))
        table = Table()
        table.add_column("parameter", no_wrap=True)
        # Choices and list defaults wrap in their own narrow columns, leaving the line to the description.
        table.add_column("type", max_width=24)
        table.add_column("default", max_width=20)
        table.add_column("bounds", no_wrap=True)
        table.add_column("description", ratio=1)
        for name, info in row["params"].items():
            cells = [name, info["type"], repr(info["default"]), info["bounds"] or "–", info["description"]]
            table.add_row(*(Text(str(cell)) for cell in cells))
        console.print(table if row["params"] else Text("no parameters"))
    return 0


def plugin_rows(registry: Registry, kind: str | None, name: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready row per plugin (of `kind`, or all; only `name` when given): name, summary, provider,
    parameters (type, default, bounds, description), cost. An unknown `name` is one line with a hint."""
    entries = [e for e in registry.all(kind) if name is None or e.spec.name == name]
    if name is not None and not entries:
        known = sorted({e.spec.name for e in registry.all(kind)})
        where = f"{kind} " if kind else "plugin "
        hint = did_you_mean(name, known)
        raise PluginError(f"no {where}named '{name}'{hint} (`harness list` shows them all)")
    rows = []
    for entry in entries:
        spec = entry.spec
        row = {
            "kind": spec.kind,
            "name": spec.name,
            "summary": spec.summary,
            "provider": entry.provider + (" (built-in)" if entry.builtin else ""),
            "builtin": entry.builtin,
            "params": params_info(spec),
        }
        if spec.kind == "architecture":
            row.update(_architecture_cost(spec, registry))
        if spec.kind == "block":
            row["roles"] = sorted(spec.roles)
        rows.append(row)
    return rows


def type_name(annotation: Any) -> str:
    """A readable type: int, float, `one of a, b` for a Literal, `int | None` for unions."""
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def bounds_text(field: Any) -> str:
    """`≥ 1, ≤ 16` from a field's constraints; "" when it declares none."""
    parts = []
    for item in field.metadata:
        for key, sign in _BOUNDS.items():
            value = getattr(item, key, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def params_info(spec) -> dict[str, dict[str, Any]]:
    """Each parameter of a spec's params model: type, default, bounds and description."""
    info = {}
    for name, field in spec.params.model_fields.items():
        info[name] = {
            "type": type_name(field.annotation),
            "default": field.get_default(call_default_factory=True),
            "bounds": bounds_text(field),
            "description": field.description or "",
        }
    return info


def _architecture_cost(spec, registry: Registry) -> dict[str, Any]:
    try:
        model = spec.build(spec.parse_params(registry=registry), in_channels=1, num_classes=5)
        return {"params_count": count_params(model), "gflops": round(forward_gflops(model), 4)}
    except Exception as exc:  # a plugin's build bug must not break `harness list`
        return {"params_count": None, "gflops": None, "cost_error": f"{type(exc).__name__}: {exc}"}
