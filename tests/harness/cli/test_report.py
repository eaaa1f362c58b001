"""`harness report` the command: its flags reach the report builder, the written files are listed on stdout
(one path a line) while progress goes to stderr, and no finished runs is one line (the report itself:
tests/harness/analysis/test_report.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis import report as analysis_report
from harness.cli.app import build_parser, main
from harness.plugins import Registry


def report(capsys, store, out, *extra):
    code = main(["report", "--store", str(store), "--out", str(out), "--no-progress", *extra])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_the_flags_and_their_defaults(capsys):
    args = build_parser().parse_args(["report", "--out", "dir"])
    assert (args.out, args.top, args.metric, args.arch, args.loss, args.balancer, args.no_progress) == (
        "dir",
        5,
        "an2dl",
        None,
        None,
        None,
        False,
    )
    assert main(["report"]) == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_the_flags_reach_the_builder_and_the_file_list_is_printed_once(capsys, monkeypatch, tmp_path):
    seen = {}

    def build(out, **options):
        seen.update(out=out, **options)
        return [Path("a.png"), Path("index.html")]

    monkeypatch.setattr(analysis_report, "build_report", build)
    argv = ["--top", "2", "--metric", "fg", "--arch", "unet", "--loss", "ce", "--balancer", "none"]
    code, stdout, stderr = report(capsys, tmp_path / "s.sqlite", tmp_path / "out", *argv, "--data", "x.npz")
    assert code == 0
    assert stdout == "a.png\nindex.html\n" and stderr == ""  # once, on stdout (not again on stderr)
    assert seen["out"] == str(tmp_path / "out") and seen["store"] == str(tmp_path / "s.sqlite")
    assert (seen["top"], seen["metric"], seen["arch"], seen["loss"], seen["balancer"], seen["data"]) == (
        2,
        "fg",
        "unet",
        "ce",
        "none",
        "x.npz",
    )
    assert "say" not in seen
    assert seen["show_progress"] is False and isinstance(seen["plugins"], Registry)
    main(["report", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "s.sqlite")])
    assert seen["show_progress"] is True and seen["top"] == 5 and seen["arch"] is None


def test_lists_every_file_it_wrote_on_stdout(capsys, trained, tmp_path):
    out = tmp_path / "report"
    code, stdout, stderr = report(capsys, trained.store, out, "--top", "1")
    assert code == 0, stderr
    written = [Path(line) for line in stdout.splitlines()]
    assert written and written[-1] == out / "index.html"
    assert all(path.parent == out and path.is_file() for path in written)
    assert sorted(written) == sorted(out.iterdir())  # every file it wrote, and only those
    assert "wrote " not in stderr and stdout.count("index.html") == 1


def test_no_finished_runs_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = report(capsys, tmp_path / "none.sqlite", out)
    assert code == 2 and stdout == ""
    assert stderr.strip().count("\n") == 0 and "no finished runs" in stderr
    assert not out.exists() and not (tmp_path / "none.sqlite").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--arch", "segnet"], "matching arch segnet"), (["--loss", "dice"], "matching loss dice")],
)
def test_a_filter_that_matches_nothing_is_one_line_naming_it(capsys, trained, tmp_path, argv, message):
    code, stdout, stderr = report(capsys, trained.store, tmp_path / "out", *argv)
    assert code == 2 and stdout == ""
    assert stderr.strip() == (
        f"harness: error: no finished runs {message} in {trained.store}; train one with `harness run` first"
    )
    assert not (tmp_path / "out").exists()
