"""harness.parsing: user strings into typed values (`k=v`, `--set`, `--since`) and errors into one line."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError
from harness.parsing import (
    coerce_string,
    describe_validation_error,
    did_you_mean,
    parse_since,
    split_assignment,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def test_did_you_mean_names_the_closest_choice_or_nothing():
    assert did_you_mean("unetp", ["unet", "unetpp", "segnet"]) == "; did you mean 'unetpp'?"
    assert did_you_mean("segnett", iter(["unet", "segnet"])) == "; did you mean 'segnet'?"  # any iterable
    assert did_you_mean("zzzz", ["unet", "segnet"]) == ""
    assert did_you_mean("unet", []) == ""


def test_split_assignment_keeps_equals_in_the_value_and_strips_spaces():
    assert split_assignment("train.lr=3e-4", "--set") == ("train.lr", "3e-4")
    assert split_assignment(" expr = a=b=c ", "--set") == ("expr", "a=b=c")
    assert split_assignment("name=", "--set") == ("name", "")  # an empty value is a value


@pytest.mark.parametrize("text", ["train.lr", "=5", "  =5", ""])
def test_split_assignment_refuses_a_missing_equals_or_key(text):
    with pytest.raises(ConfigError) as info:
        split_assignment(text, "--arch-param")
    assert str(info.value) == f"--arch-param expects key=value, got {text!r}"


def test_coerce_string_reads_ints_bools_none_and_json():
    assert coerce_string(int, "5") == 5 and type(coerce_string(int, "5")) is int
    assert coerce_string(bool, "false") is False and coerce_string(bool, "true") is True
    assert coerce_string(float | None, "None") is None and coerce_string(int | None, "null") is None
    assert coerce_string(list[int], "[1, 2]") == [1, 2]
    assert coerce_string(dict[str, int], '{"a": 1}') == {"a": 1}
    assert coerce_string(str, "null") == "null"  # a string field keeps the word as written


def test_coerce_string_reads_a_comma_list_with_typed_items():
    assert coerce_string(list[int], "1,2, 3") == [1, 2, 3]
    assert coerce_string(list[str], "unet, segnet") == ["unet", "segnet"]
    assert coerce_string(list[float], "0.5,1") == [0.5, 1.0]


def test_coerce_string_returns_the_raw_string_when_nothing_fits():
    assert coerce_string(int, "five") == "five"
    assert coerce_string(list[int], "1,x") == [1, "x"]  # the list read, so the error names the bad item
    assert coerce_string(int, "[" * 5000) == "[" * 5000  # too deep for the JSON parser: still the raw text


class _Params(BaseModel):
    width: int
    tags: dict[str, int] = {}


def test_describe_validation_error_is_one_line_with_field_message_and_value():
    with pytest.raises(ValidationError) as info:
        _Params.model_validate({"width": "wide"})
    line = describe_validation_error(info.value, "arch unet")
    assert line.startswith("arch unet: width: ")
    assert line.endswith("(got 'wide')") and "\n" not in line
    with pytest.raises(ValidationError) as info:
        _Params.model_validate({"width": "x", "tags": {"a": "b"}})
    both = describe_validation_error(info.value, "cfg")
    assert both.startswith("cfg: width: ") and "; tags.a: " in both  # every problem, joined on one line
    with pytest.raises(ValidationError) as info:
        _Params.model_validate({})
    missing = describe_validation_error(info.value, "cfg")
    assert missing == "cfg: width: Field required"  # a dict input is not echoed back


@pytest.mark.parametrize(
    ("age", "delta"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 1d ", timedelta(days=1)),
    ],
)
def test_parse_since_turns_an_age_into_a_utc_timestamp(age, delta):
    assert parse_since(age, now=NOW) == (NOW - delta).isoformat(timespec="microseconds")


def test_parse_since_reads_dates_and_converts_time_zones_to_utc():
    assert parse_since("2026-11-24", now=NOW) == "2026-11-24T00:00:00.000000+00:00"
    assert parse_since("2026-11-24T08:30", now=NOW) == "2026-11-24T08:30:00.000000+00:00"  # naive: UTC
    assert parse_since("2026-11-24T08:30+02:00", now=NOW) == "2026-11-24T06:30:00.000000+00:00"
    # The result compares with stored ISO UTC times as text.
    assert parse_since("1d", now=NOW) < NOW.isoformat(timespec="microseconds")


def test_a_naive_date_is_utc_whatever_the_local_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30
    time.tzset()
    try:
        assert parse_since("2026-11-24T08:30", now=NOW) == "2026-11-24T08:30:00.000000+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_parse_since_without_now_is_relative_to_the_current_time():
    before = datetime.now(UTC)
    since = datetime.fromisoformat(parse_since("1h"))
    assert since.tzinfo is not None and since.utcoffset() == timedelta(0)
    assert before - timedelta(hours=1, seconds=5) <= since <= datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize("text", ["yesterday", "3y", "m", "-3d", "2026-13-01", ""])
def test_parse_since_refuses_anything_else_with_the_accepted_forms(text):
    with pytest.raises(ConfigError) as info:
        parse_since(text, now=NOW)
    assert str(info.value) == (
        f"--since expects an age like 30m, 12h, 3d, 2w or a date like 2026-11-24, got {text!r}"
    )


def test_parse_since_keeps_a_non_utc_now_s_instant():
    tz = timezone(timedelta(hours=5))
    local_now = NOW.astimezone(tz)
    assert datetime.fromisoformat(parse_since("1h", now=local_now)) == NOW - timedelta(hours=1)
