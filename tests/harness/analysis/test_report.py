"""`harness report`: figures and a mailable index.html from two tiny real runs; every shown string escaped."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import sqlite3

import numpy as np
import pytest

from harness.analysis.compare import load_per_image
from harness.analysis.overlays import overlay_rows, spread
from harness.analysis.report import FILES
from harness.cli.app import main
from harness.inference.metrics import per_image_confusion
from harness.store import RunStore
from harness.training.checkpoints import PER_IMAGE_NAME
from leaderboard.html import render_page
from tests_support import TINY_ARGS

SCRIPT = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A store with two finished 2-epoch runs (ce and dice) on the tiny synthetic set."""
    store = tmp_path_factory.mktemp("report") / "runs" / "harness.sqlite"
    for loss in ("ce", "dice"):
        assert main(["run", *TINY_ARGS, "--epochs", "2", "--loss", loss, "--store", str(store)]) == 0
    return store


def copied(store, tmp_path):
    """A private copy of the store folder (run files included) that a test may change."""
    shutil.copytree(store.parent, tmp_path / "copy")
    return tmp_path / "copy" / store.name


def report(capsys, store, out, *extra):
    code = main(["report", "--store", str(store), "--out", str(out), "--no-progress", *extra])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_report_writes_the_figures_and_one_self_contained_page(two_runs, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, stderr = report(capsys, two_runs, out, "--top", "2")
    assert code == 0, stderr
    expected = [out / FILES[k] for k in ("curves", "iou", "confusion", "overlays", "index")]
    assert stdout.split() == [str(p) for p in expected]
    assert "wrote " not in stderr  # the file list is printed once, on stdout
    for png in expected[:-1]:
        assert png.read_bytes().startswith(PNG_MAGIC)
    page = expected[-1].read_text()
    with RunStore(two_runs, create=False) as store:
        run_ids = [run["run_id"] for run in store.list_runs()]
    assert all(run_id in page for run_id in run_ids)
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(e) for e in embedded] == [p.read_bytes() for p in expected[:-1]]
    # nothing to fetch: the one file can be mailed (its only links are to its own config sections)
    assert not re.search(r'(src|href)="(?!data:|#config-)', page)


def test_strings_from_the_store_are_escaped_in_the_page(two_runs, tmp_path, capsys):
    store = copied(two_runs, tmp_path)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET arch = ?", (SCRIPT,))  # display only: the model is rebuilt from config
    code, _, stderr = report(capsys, store, tmp_path / "out")
    assert code == 0, stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page


def test_render_page_escapes_title_headers_cells_captions_and_notes():
    page = render_page(
        f"title {SCRIPT}",
        ["run", f"h {SCRIPT}"],
        [[f"r {SCRIPT}", "0.5"], ['"quoted" & <b>', "–"]],
        [(f'cap {SCRIPT} " onerror="x', PNG_MAGIC)],
        notes=[f"note {SCRIPT}"],
    )
    assert "<script" not in page and "<b>" not in page and 'onerror="x' not in page
    # <title> and <h1>, header, cell, alt text, caption, note
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 7
    assert "&quot;quoted&quot; &amp; &lt;b&gt;" in page and "note &lt;script&gt;" in page
    assert '<td class="num">0.5</td>' in page and "<td>r &lt;script&gt;" in page


def test_overlays_show_what_validation_scored(two_runs):
    with RunStore(two_runs, create=False) as store:
        run = store.list_runs()[0]
        stored = load_per_image(store, run)
    got = overlay_rows(run, stored, two_runs, None, count=8, step=lambda description: None)
    positions = spread(len(stored.indices), 8)
    assert list(got.rows) == list(stored.indices[positions]) and len(got.rows) == min(8, len(stored.indices))
    fresh = per_image_confusion(got.preds, got.truth, 5, 0).numpy()
    # The reloaded model on the reloaded rows reproduces the best epoch's validation (bf16 may flip a pixel).
    assert np.abs(fresh - stored.confusion[positions]).sum() <= 0.01 * fresh.sum()


def test_a_run_without_per_image_results_still_gets_curves_and_bars(two_runs, tmp_path, capsys):
    store = copied(two_runs, tmp_path)
    for npz in store.parent.glob(f"*/{PER_IMAGE_NAME}"):
        npz.unlink()
    code, stdout, stderr = report(capsys, store, tmp_path / "out")
    assert code == 0, stderr
    assert [line.rsplit("/", 1)[-1] for line in stdout.split()] == [
        FILES["curves"],
        FILES["iou"],
        FILES["index"],
    ]
    assert "Confusion matrix and overlays skipped: run" in (tmp_path / "out" / "index.html").read_text()


def test_leaderboard_html_is_the_table_plus_the_figures_escaped(two_runs, tmp_path, capsys):
    store = copied(two_runs, tmp_path)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET arch = ?, balancer = ?", (SCRIPT, f"b {SCRIPT}"))
    code = main(["leaderboard", "--store", str(store), "--format", "html"])
    page, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 4  # curves, class IoU, confusion, overlays
    assert ">config</th>" in page and ">n</th>" in page  # grouped by configuration, like the table view
    assert not re.search(r'(src|href)="(?!data:|#config-)', page)


def linked_configs(page: str) -> list[tuple[str, dict]]:
    """Per table row, the text of its linked cell and the config its anchor's section holds."""
    sections = {
        anchor: json.loads(html.unescape(text))
        for anchor, text in re.findall(
            r'<section class="config" id="([^"]+)">.*?<pre>(.*?)</pre>', page, re.S
        )
    }
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = body.strip().split("\n")
    links = [re.findall(r'<a href="#([^"]+)">([^<]*)</a>', row) for row in rows]
    assert all(len(found) == 1 for found in links), links  # one link per row
    return [(text, sections[anchor]) for ((anchor, text),) in links]


@pytest.mark.parametrize(
    "argv", [["report"], ["leaderboard", "--by", "config"], ["leaderboard", "--by", "run"]]
)
def test_every_row_links_to_its_own_resolved_config(two_runs, tmp_path, capsys, argv):
    out = tmp_path / "out"
    extra = ["--out", str(out), "--no-progress"] if argv[0] == "report" else ["--format", "html"]
    code = main([*argv, *extra, "--store", str(two_runs)])
    page, stderr = capsys.readouterr()
    assert code == 0, stderr
    page = (out / FILES["index"]).read_text() if argv[0] == "report" else page
    with RunStore(two_runs, create=False) as store:
        runs = store.list_runs()
    by_cell = {run["config_hash"][:8]: run for run in runs} | {run["run_id"]: run for run in runs}
    linked = linked_configs(page)
    assert len(linked) == len(runs) == 2
    for text, config in linked:
        assert config == by_cell[text]["config"]
    assert {config["loss"]["name"] for _, config in linked} == {"ce", "dice"}


@pytest.mark.parametrize("by", ["config", "arch", "run"])
def test_the_html_figures_draw_the_tables_rows_with_its_labels(two_runs, capsys, monkeypatch, by):
    import harness.analysis.report as report_module

    drawn: list[list[str]] = []
    for name in ("learning_curves", "class_iou_bars"):
        real = getattr(report_module, name)

        def spy(rows, *args, real=real):
            drawn.append([row["legend"] for row in rows])
            return real(rows, *args)

        monkeypatch.setattr(report_module, name, spy)
    code = main(["leaderboard", "--store", str(two_runs), "--format", "html", "--by", by])
    page, stderr = capsys.readouterr()
    assert code == 0, stderr
    headers = re.findall(r"<th>([^<]*)</th>", page)
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    table = [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in body.strip().split("\n")
    ]
    labels = [f"#{row[headers.index('#')]} {row[headers.index('label')]}" for row in table]
    assert drawn == [labels, labels]  # curves and bars: the table's rows, in its order, by its labels
    assert len(labels) == (1 if by == "arch" else 2)  # --by arch: one unet row, its best variant
    assert by == "arch" or any("· dice" in label for label in labels)  # the variant is named
