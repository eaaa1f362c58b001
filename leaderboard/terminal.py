"""The leaderboard's terminal table, built for the width it has.

Columns have priorities. The identity of a row — rank, run id or config, label, data, mIoU (± std), n,
and status and error when shown — is kept whole: those columns never shrink below their text (a label
too long for the line wraps at its commas rather than losing characters). The rest — per-class IoU,
params, GFLOPs, time, img/s — is dropped from the right until the table fits, and a footnote names what
was dropped and how to see it (`--wide`, or a wider terminal: `COLUMNS` counts when output is piped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What a rich table spends around each column: one space of padding each side and one border.
_PER_COLUMN = 3
_EDGE = 1
_MIN_WRAPPED = 8  # a wrapping column (label, error) is not squeezed narrower than this


@dataclass(frozen=True)
class Column:
    """One column: its header, its cells, whether it is kept whole (identity) and may wrap, alignment."""

    header: str
    cells: list[str]
    keep: bool = True
    wrap: bool = False
    right: bool = False

    @property
    def width(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])


def table_width(columns: list[Column]) -> int:
    """The characters a rich table of `columns` needs on one line, every cell unwrapped."""
    return _EDGE + sum(c.width + _PER_COLUMN for c in columns)


def fit(columns: list[Column], width: int | None) -> tuple[list[Column], list[str]]:
    """The columns shown at `width` (None: all) and the headers of those dropped, in table order.

    Optional columns go from the right, one by one, until the table fits or only kept ones are left."""
    shown = list(columns)
    dropped: list[str] = []
    if width is None:
        return shown, dropped
    while table_width(shown) > width:
        optional = [i for i, column in enumerate(shown) if not column.keep]
        if not optional:
            break
        dropped.insert(0, shown.pop(optional[-1]).header)
    return shown, dropped


def wrap_widths(columns: list[Column], deficit: int) -> dict[str, int]:
    """Widths of the wrapping columns that give up `deficit` characters between them (widest first), each
    keeping at least `_MIN_WRAPPED`; {} when nothing has to give."""
    if deficit <= 0:
        return {}
    widths = {c.header: c.width for c in columns if c.wrap}
    while deficit > 0:
        name = max(widths, key=lambda key: widths[key], default=None)
        if name is None or widths[name] <= _MIN_WRAPPED:
            break
        widths[name] -= 1
        deficit -= 1
    return {name: w for name, w in widths.items() if w < next(c.width for c in columns if c.header == name)}


def footnote(dropped: list[str], width: int) -> str:
    """The line under a table that lost columns: which, and how to get them back."""
    return (
        f"not shown at {width} columns: {', '.join(dropped)} (--wide shows every column; "
        "--format csv or json has them all)"
    )


def render_table(
    columns: list[Column], console: Any, *, wide: bool = False, title: str | None = None
) -> None:
    """Print `columns` as one rich table on `console`: fitted to its width, or every column with `wide`."""
    from rich.table import Table
    from rich.text import Text

    width = None if wide else console.width
    shown, dropped = fit(columns, width)
    table = Table(title=title and Text(title), title_justify="left", header_style="bold")
    needed = table_width(shown)
    wrapped = wrap_widths(shown, needed - width if width is not None else 0)
    for column in shown:
        options: dict[str, Any] = {"justify": "right" if column.right else "left"}
        if column.header in wrapped:
            # Not enough room even for the kept columns: the wrapping ones give up width, never characters.
            options.update(overflow="fold", width=wrapped[column.header])
        else:
            options.update(no_wrap=True, min_width=column.width)
        table.add_column(Text(column.header), **options)
    for index in range(len(columns[0].cells) if columns else 0):
        # Text, not markup: a label's `[bottleneck=se]` is not a rich style tag.
        table.add_row(*(Text(column.cells[index]) for column in shown))
    if wide and needed > console.width:
        console.width = needed  # --wide: the whole table on each line, however wide the terminal is
    console.print(table)
    if dropped:
        console.print(Text(footnote(dropped, console.width), style="dim"))
