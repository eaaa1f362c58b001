"""`harness check-plugin NAME`: the conformance kit (the checks CI runs on built-ins) on any plugin."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness.cli.options import (
    EXIT_FAILED,
    add_common,
    error_console,
    load_registry,
    print_json,
    wide_console,
)
from harness.errors import PluginError
from harness.parsing import did_you_mean


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check-plugin",
        help="run the conformance kit on a plugin",
        description="Run the conformance kit (the checks CI runs on built-ins) on any installed plugin.",
    )
    add_common(p)
    p.add_argument("name", help="plugin name, e.g. unet (see `harness list`)")
    p.add_argument(
        "--kind",
        choices=("architecture", "block", "loss", "balancer"),
        help="when a name exists in several kinds",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from harness.conformance import CHECKS_BY_KIND, run_checks

    registry = load_registry(args, error_console())
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
        for check, passed, note in run_checks(spec, registry)
    ]
    if args.format == "json":
        print_json(results)
    else:
        table = Table(title=f"conformance of '{args.name}'")
        for column in ("kind", "check", "result", "note"):
            table.add_column(column, overflow="fold")
        for row in results:
            verdict = "[green]pass[/]" if row["passed"] else "[red]FAIL[/]"
            table.add_row(row["kind"], row["check"], verdict, row["note"])
        wide_console().print(table)
    return 0 if all(row["passed"] for row in results) else EXIT_FAILED
