"""Hostile strings in run names, plugin names and config values: stored and read back intact (SQL takes
them only as parameters) and shown only as escaped text in every HTML page the harness writes.

Complements tests/harness/store/test_runs.py (hostile run ids round-trip) and
tests/harness/analysis/test_report.py (arch and balancer escaped): here every text column, config keys
and values, the CLI's filters, class names, run ids in pages and attribute-breaking quotes.
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
from pathlib import Path

import pytest

from harness.cli.app import main
from harness.store import RunStore

DROP = "'; DROP TABLE runs; --"
QUOTES = "it's \"quoted\" `back` ''"
SCRIPT = "<script>alert('x')</script>"
BREAKOUT = 'x" onmouseover="alert(1)'
IMG = "<img src=x onerror=alert(1)>"  # no '/', so it is also a valid run id
HOSTILE = (DROP, QUOTES, SCRIPT, BREAKOUT, IMG)
TABLES = {"runs", "epochs"}


def _config(value: str) -> dict:
    return {
        "seed": 0,
        "arch": {"name": f"unet{value}", "params": {"depth": value, value: [value, {"k": value}]}},
        # One dataset for all (the hostile dataset_id has no hash to tell them apart), so the report and the
        # leaderboard rank them together and every hostile string reaches one page.
        "data": {"source": "synthetic", "ignore_index": 0},
        value: value,
    }


def _record(store: RunStore, run_id: str, value: str, miou: float) -> None:
    classes = ["background", f"soil {value}", "bedrock", "sand", "big rock"]
    store.start_run(
        run_id=run_id,
        config=_config(value),
        config_hash=f"{value}hash",
        seed=0,
        arch=f"arch {value}",
        loss=f"loss {value}",
        balancer=f"balancer {value}",
        dataset_id=value,
        device=value,
        torch_version=value,
        params=10,
        gflops=1.0,
        class_names=classes,
    )
    for epoch in (1, 2):
        store.log_epoch(
            run_id, epoch, {"train_loss": 1.0 / epoch, "val_loss": 1.0, "val_miou": miou, "note": value}
        )
    iou = {name: None if name == "background" else miou for name in classes}
    store.finish_run(
        run_id,
        status="finished",
        metrics={"miou_an2dl": miou, "miou_fg": miou, "iou": iou, "note": value},
        epochs=2,
        best_epoch=2,
        wall_time=3.0,
        train_img_s=10.0,
        error=value,
        checkpoint=store.run_dir(run_id) / value,  # stored relative to the store, read back absolute
    )


def _run_id(index: int, value: str) -> str:
    return f"run{index} {value}".replace("/", "_")


@pytest.fixture
def hostile_store(tmp_path) -> Path:
    path = tmp_path / "runs" / "harness.sqlite"
    with RunStore(path) as store:
        for index, value in enumerate(HOSTILE):
            _record(store, _run_id(index, value), value, miou=0.1 * (index + 1))
    return path


def _tables_intact(path: Path) -> None:
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert names >= TABLES
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (len(HOSTILE),)


def test_hostile_values_in_every_column_round_trip(hostile_store):
    with RunStore(hostile_store, create=False) as store:
        for index, value in enumerate(HOSTILE):
            run_id = _run_id(index, value)
            run = store.get_run(run_id)
            assert run["config"] == _config(value)
            assert (run["arch"], run["loss"], run["balancer"]) == (
                f"arch {value}",
                f"loss {value}",
                f"balancer {value}",
            )
            assert (run["dataset_id"], run["device"], run["error"]) == (value,) * 3
            assert run["checkpoint"] == str((store.run_dir(run_id) / value).resolve())
            assert run["class_names"][1] == f"soil {value}" and run["metrics"]["note"] == value
            assert [h["note"] for h in store.history(run_id)] == [value, value]
            # the filters bind the value too: each matches exactly its own run
            assert [r["run_id"] for r in store.list_runs(arch=f"arch {value}")] == [run_id]
            assert [
                r["run_id"] for r in store.list_runs(loss=f"loss {value}", balancer=f"balancer {value}")
            ] == [run_id]
            assert store.list_runs(arch=value, status=value) == []
    _tables_intact(hostile_store)


@pytest.mark.parametrize("value", HOSTILE, ids=["drop", "quotes", "script", "breakout", "img"])
def test_hostile_cli_filters_match_nothing_and_drop_nothing(value, hostile_store, capsys):
    for flag in ("--arch", "--loss", "--balancer"):
        code = main(
            ["leaderboard", flag, value, "--by", "run", "--format", "json", "--store", str(hostile_store)]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.strip() == "[]" or "no " in out
    code = main(
        [
            "leaderboard",
            "--arch",
            f"arch {value}",
            "--by",
            "run",
            "--format",
            "json",
            "--store",
            str(hostile_store),
        ]
    )
    (row,) = json.loads(capsys.readouterr().out)
    assert row["arch"] == f"arch {value}" and row["run_id"].startswith("run")
    _tables_intact(hostile_store)


def _assert_escaped(page: str) -> None:
    assert "<script" not in page
    assert not re.search(r'<img(?! src="data:image/png;base64,[A-Za-z0-9+/=]+" alt=")', page)  # figures only
    assert 'onmouseover="alert(1)' not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "x&quot; onmouseover=&quot;alert(1)" in page


@pytest.mark.parametrize("by", ["run", "config", "arch"])
def test_leaderboard_html_escapes_run_ids_plugin_names_and_class_names(by, hostile_store, capsys):
    code = main(["leaderboard", "--format", "html", "--by", by, "--store", str(hostile_store)])
    page, err = capsys.readouterr()
    assert code == 0, err
    _assert_escaped(page)
    assert "loss &lt;script&gt;" in page  # the loss column, not only arch and balancer
    if by == "run":
        assert "run4 &lt;img src=x onerror=alert(1)&gt;" in page  # run ids are escaped too


def test_report_escapes_run_ids_plugin_names_class_names_and_config_values(hostile_store, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["report", "--out", str(out), "--top", "5", "--no-progress", "--store", str(hostile_store)])
    _, err = capsys.readouterr()
    assert code == 0, err
    page = (out / "index.html").read_text()
    _assert_escaped(page)
    assert "run4 &lt;img src=x onerror=alert(1)&gt;" in page  # run id
    assert "soil &lt;script&gt;" in page  # a class name from the store (a table header)
    assert (
        "&quot;depth&quot;: &quot;&lt;script&gt;" in page
    )  # an architecture parameter value from the config
    assert sorted(p.name for p in out.iterdir()) == ["class_iou.png", "index.html", "learning_curves.png"]


@pytest.mark.parametrize("command", ["report", "leaderboard"])
def test_config_sections_escape_hostile_keys_values_and_hashes(command, hostile_store, tmp_path, capsys):
    out = tmp_path / "report"
    extra = ["--out", str(out), "--top", "5", "--no-progress"]
    extra = extra if command == "report" else ["--by", "run", "--format", "html"]
    code = main([command, *extra, "--store", str(hostile_store)])
    page, err = capsys.readouterr()
    assert code == 0, err
    page = (out / "index.html").read_text() if command == "report" else page
    _assert_escaped(page)
    sections = dict(re.findall(r'<section class="config" id="([^"]+)">.*?<pre>(.*?)</pre>', page, re.S))
    links = re.findall(r'<a href="#([^"]+)">', page)
    assert len(sections) == len(links) == len(HOSTILE)  # one per run: each run has its own hostile hash
    assert set(links) == set(sections)
    assert all(re.fullmatch(r"config-[A-Za-z0-9_-]+", anchor) for anchor in sections)  # never escaped
    configs = [json.loads(html.unescape(text)) for text in sections.values()]
    assert sorted(configs, key=json.dumps) == sorted((_config(v) for v in HOSTILE), key=json.dumps)
    for text in sections.values():
        assert "<" not in text and '"' not in text  # the JSON's own quotes are escaped too
