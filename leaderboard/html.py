"""A self-contained HTML page: a title, a table and PNG figures embedded as base64 data URIs.

One file with no external references, so a report can be mailed or attached to an issue as is. Every string
that reaches the page — title, headers, cells, captions, notes — goes through ``html.escape``: run ids,
plugin names and config values are user-chosen, and a page that runs what a config says is not a report.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; margin-top: 0.3em; }
p.note { color: #8a5a00; }
"""

# A number, optionally with a percent sign and a "± spread" (the leaderboard's mean ± std cells).
_NUMBER = re.compile(r"^[-+−]?\d[\d,]*(\.\d+)?%?( ± \d[\d,]*(\.\d+)?%?)?$")
_BLANKS = {"", "–", "-"}
_NUM_CLASS = ' class="num"'


def _numeric_columns(rows: Sequence[Sequence[str]]) -> set[int]:
    """Columns whose every filled cell reads as a number; judged per column, so a config hash that happens
    to be all digits does not right-align one cell in a column of hex strings."""
    width = max((len(row) for row in rows), default=0)
    numeric = set()
    for column in range(width):
        cells = [str(row[column]).strip() for row in rows if column < len(row)]
        filled = [c for c in cells if c not in _BLANKS]
        if filled and all(_NUMBER.match(c) for c in filled):
            numeric.add(column)
    return numeric


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML ``<table>`` of escaped strings; columns of numbers are right-aligned."""
    numeric = _numeric_columns(rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    lines = []
    for row in rows:
        cells = "".join(
            f"<td{_NUM_CLASS if i in numeric else ''}>{html.escape(str(cell))}</td>"
            for i, cell in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    body = "\n".join(lines)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_figure(caption: str, png: bytes) -> str:
    """One ``<figure>`` with the PNG inlined as a data URI and the escaped caption as alt text and caption."""
    data = base64.b64encode(png).decode("ascii")
    text = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{text}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def render_page(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    figures: Sequence[tuple[str, bytes]] = (),
    *,
    notes: Sequence[str] = (),
) -> str:
    """A complete HTML document: ``title``, optional ``notes`` (one paragraph each), the table, figures.

    ``headers`` and each row are display strings (format numbers first); ``figures`` are (caption, PNG
    bytes) pairs shown in order after the table. Nothing is interpreted as markup: every string is escaped,
    so ``<script>`` in a run id or a config value shows as text. The leaderboard's ``--format html`` calls
    this with its table and no figures.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
        render_table(headers, rows),
        *(render_figure(caption, png) for caption, png in figures),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
