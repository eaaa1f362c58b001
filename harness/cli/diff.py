"""`harness diff A B`: the settings two runs or configurations differ in, from their resolved configs."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness.cli.options import add_common, print_json, wide_console
from harness.store import resolve_store_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "diff",
        help="how do two runs or configs differ? only the settings that differ",
        description="The resolved configs of A and B, flattened to dotted keys (arch.params.bottleneck), "
        "showing only the settings that differ, the seed and the data (data.source, dataset_id); '–' marks "
        "a key one side does not have. A and B are each a run id (or unique prefix) or a config hash prefix "
        "(the leaderboard's config column: all finished runs of that configuration, whose seeds are listed).",
    )
    add_common(p)
    p.add_argument("a", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("b", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")


def run(args: argparse.Namespace) -> int:
    from harness.analysis.diff import diff_store, label, show

    result = diff_store(resolve_store_path(args.store), args.a, args.b)
    if args.format == "json":
        print_json(result.to_dict())
        return 0
    a, b = label(result.a), label(result.b)
    if not result.differences:
        print(f"no difference: A {a} and B {b} have the same settings, seed and data")
        return 0
    count = len(result.differences)
    table = Table(title=f"{count} setting{'s' * (count != 1)} differ: A → B")
    table.add_column("setting", overflow="fold")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")
    for difference in result.differences:
        table.add_row(difference.key, show(difference.a), show(difference.b))
    print(f"A: {a}")
    print(f"B: {b}")
    wide_console().print(table)
    return 0
