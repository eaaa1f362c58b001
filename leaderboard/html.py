"""A self-contained HTML page: a title, a table and PNG figures embedded as base64 data URIs.

One file with no external references, so a report can be mailed or attached to an issue as is. Every string
that reaches the page — title, headers, cells, captions, notes — goes through ``html.escape``: run ids,
plugin names and config values are user-chosen, and a page that runs what a config says is not a report.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
section.config pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
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


@dataclass(frozen=True)
class ConfigSection:
    """One resolved config at the end of a page: ``key`` (the config hash) names its anchor."""

    key: str
    caption: str
    config: Any


@dataclass(frozen=True)
class ConfigLinks:
    """Per table row, the key of the config section its config (or run) cell links to; the sections."""

    targets: list[str | None] = field(default_factory=list)
    sections: list[ConfigSection] = field(default_factory=list)


def anchor(key: str) -> str:
    """The element id of a config's section: ``config-<hash>``; a key that is not a plain slug (config
    hashes are hex; a hostile store's need not be) gets a digest of itself, so an id never needs escaping."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
        return f"config-{key}"
    return f"config-x{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def config_links(rows: Sequence[dict], runs: Sequence[dict]) -> ConfigLinks:
    """Links from leaderboard or report rows (run rows or config groups) to their resolved configs.

    A config's section shows the resolved config of its first run among ``rows`` (a group's lowest seed);
    the runs of one config hash differ at most in what the hash leaves out (seed, device, log section)."""
    by_id = {run.get("run_id"): run for run in runs}
    targets: list[str | None] = []
    members: dict[str, list[dict]] = {}
    for row in rows:
        key = row.get("config_hash")
        found = [by_id[i] for i in row.get("run_ids") or [row.get("run_id")] if i in by_id]
        if not key or not found:
            targets.append(None)
            continue
        targets.append(str(key))
        listed = members.setdefault(str(key), [])
        seen = {run.get("run_id") for run in listed}
        listed.extend(run for run in found if run.get("run_id") not in seen)
    sections = []
    for key, listed in members.items():
        shown = listed[0]
        ids = ", ".join(f"{run.get('run_id')} (seed {run.get('seed')})" for run in listed)
        caption = f"The resolved config of run {ids}."
        if len(listed) > 1:
            caption = (
                f"Runs {ids}; shown: the resolved config of {shown.get('run_id')} (the others may differ "
                "in what the config hash leaves out: the seed, train.device and the log section)."
            )
        sections.append(ConfigSection(key, caption, shown.get("config")))
    return ConfigLinks(targets, sections)


@dataclass(frozen=True)
class Table:
    """One table of a page: an optional heading (a dataset's), headers, display cells and, per row, the key
    of the config section its config (or run) cell links to."""

    heading: str | None
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    targets: Sequence[str | None] = ()


def _link_column(headers: Sequence[str]) -> int | None:
    for name in ("config", "run"):
        if name in headers:
            return list(headers).index(name)
    return None


def _cell(text: Any, target: str | None) -> str:
    shown = html.escape(str(text))
    return shown if target is None else f'<a href="#{anchor(target)}">{shown}</a>'


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], targets: Sequence[str | None] = ()
) -> str:
    """An HTML ``<table>`` of escaped strings; columns of numbers are right-aligned. ``targets`` (one per row,
    or none) are config keys: the row's config cell (else its run cell) links to that config's section."""
    numeric = _numeric_columns(rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    linked = _link_column(headers)
    lines = []
    for index, row in enumerate(rows):
        target = targets[index] if index < len(targets) else None
        cells = "".join(
            f"<td{_NUM_CLASS if i in numeric else ''}>{_cell(cell, target if i == linked else None)}</td>"
            for i, cell in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    body = "\n".join(lines)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _table_parts(table: Table) -> list[str]:
    heading = [] if table.heading is None else [f"<h2>{html.escape(table.heading)}</h2>"]
    return [*heading, render_table(table.headers, table.rows, table.targets)]


def render_figure(caption: str, png: bytes) -> str:
    """One ``<figure>`` with the PNG inlined as a data URI and the escaped caption as alt text and caption."""
    data = base64.b64encode(png).decode("ascii")
    text = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{text}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def render_configs(sections: Sequence[ConfigSection]) -> list[str]:
    """The resolved configs as escaped, pretty JSON, one ``<section id="config-<hash>">`` each."""
    if not sections:
        return []
    parts = ["<h2>Resolved configs</h2>"]
    for section in sections:
        text = json.dumps(section.config, indent=2, ensure_ascii=False, default=str)
        parts.append(
            f'<section class="config" id="{anchor(section.key)}"><h3>config {html.escape(section.key)}</h3>'
            f"<p>{html.escape(section.caption)}</p><pre>{html.escape(text)}</pre></section>"
        )
    return parts


def render_page(
    title: str,
    headers: Sequence[str] = (),
    rows: Sequence[Sequence[str]] = (),
    figures: Sequence[tuple[str, bytes]] = (),
    *,
    notes: Sequence[str] = (),
    links: ConfigLinks | None = None,
    tables: Sequence[Table] | None = None,
) -> str:
    """A complete HTML document: ``title``, optional ``notes`` (one paragraph each), the table, figures.

    ``headers`` and each row are display strings (format numbers first); ``figures`` are (caption, PNG
    bytes) pairs shown in order after the table; ``links`` (see ``config_links``) adds, at the end, one
    section per resolved config as pretty JSON, each row's config cell linking to its own. Nothing is
    interpreted as markup: every string is escaped, so ``<script>`` in a run id or a config value shows as
    text. ``tables`` (each with its heading and links) replaces ``headers``/``rows``: the leaderboard shows
    one table per dataset.
    """
    links = links or ConfigLinks()
    if tables is None:
        tables = [Table(None, headers, rows, links.targets)]
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
        *(part for table in tables for part in _table_parts(table)),
        *(render_figure(caption, png) for caption, png in figures),
        *render_configs(links.sections),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
