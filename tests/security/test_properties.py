"""Property-based checks of the two parsers of untrusted input, the npz loader and the config parser: any
input either loads as valid or is refused with the project's own error (a HarnessError with a one-line
message), never another exception.

The example counts keep CI at a few seconds and the runs reproducible (derandomized); for a deeper search
set HARNESS_FUZZ_EXAMPLES (e.g. 5000), which also draws fresh random examples on each run.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.config import AugmentConfig, DataConfig, TrainConfig, build_config, read_toml, resolve
from harness.data.dataset import SegmentationData, load_npz
from harness.errors import HarnessError
from harness.plugins import load_plugins

_EXPLORE = os.environ.get("HARNESS_FUZZ_EXAMPLES")


def fuzz(examples: int):
    """Settings of one property: `examples` per CI run, no example database written into the repository."""
    return settings(
        max_examples=int(_EXPLORE) if _EXPLORE else examples,
        deadline=None,
        database=None,
        derandomize=not _EXPLORE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


REGISTRY = load_plugins(autoload=False)


def refused_or(action, check=lambda value: None):
    """Run `action`; a HarnessError must be one line. Anything else but success propagates (a bug)."""
    try:
        value = action()
    except HarnessError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        event(f"refused: {type(exc).__name__}")  # --hypothesis-show-statistics shows the mix
        return None
    check(value)
    event("accepted")
    return value


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------------------------------------------------
# The npz loader

DTYPES = st.one_of(
    hnp.unsigned_integer_dtypes(),
    hnp.integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.unicode_string_dtypes(max_len=2),
    hnp.byte_string_dtypes(max_len=2),
)
SHAPES = st.one_of(
    st.tuples(st.integers(0, 3), st.just(2), st.integers(0, 5), st.integers(0, 5)),  # like training_set
    st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 5)),  # like test_set
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3),
)


def _elements(dtype: np.dtype):
    """Mostly class ids and pixel values (so the success path is explored too), sometimes anything."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.one_of(st.integers(0, min(5, info.max)), st.integers(int(info.min), int(info.max)))
    if dtype.kind == "f":
        width = dtype.itemsize * 8
        return st.one_of(st.integers(0, 5).map(float), st.floats(width=width), st.floats(0, 255, width=width))
    return None


@st.composite
def arrays(draw) -> np.ndarray:
    if draw(st.integers(0, 15)) == 0:
        return np.array([1, "a", None, [2]], dtype=object)  # pickled when saved
    dtype, shape = draw(DTYPES), draw(SHAPES)
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


@st.composite
def near_valid_members(draw) -> dict[str, np.ndarray]:
    """Mostly a well-formed file, now and then with one thing off: the success path is fuzzed too."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64]))
    image = st.one_of(st.integers(0, 255), st.integers(-2, 300)) if dtype != np.uint8 else st.integers(0, 255)
    if np.dtype(dtype).kind == "f":
        width = np.dtype(dtype).itemsize * 8
        image = st.one_of(image.map(float), st.floats(0, 255, width=width), st.floats(width=width))
    train = draw(hnp.arrays(dtype, (n, 2, h, w), elements=image))
    train[:, 1] = draw(
        hnp.arrays(np.int64, (n, h, w), elements=st.one_of(st.integers(0, 4), st.integers(-1, 6)))
    )
    members = {"training_set": train}
    if draw(st.booleans()):
        size = draw(st.sampled_from([(h, w), (h, w), (h + 1, w), (w, h)]))
        members["test_set"] = draw(hnp.arrays(dtype, (draw(st.integers(0, 2)), *size), elements=image))
    return members


KEYS = st.one_of(
    st.sampled_from(["training_set", "test_set"]),
    st.text(st.characters(codec="ascii", exclude_characters="\x00/"), min_size=1, max_size=8),
)


def npz_bytes(members: dict[str, np.ndarray], compressed: bool) -> bytes:
    """What np.savez writes, built by hand so that any key works (np.savez reserves `file`)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for key, array in members.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=True)
    return buffer.getvalue()


@st.composite
def damaged(draw, content: bytes) -> bytes:
    how = draw(st.sampled_from(["intact", "intact", "truncated", "overwritten"]))
    if how == "truncated" and content:
        return content[: draw(st.integers(0, len(content) - 1))]
    if how == "overwritten" and content:
        start = draw(st.integers(0, len(content) - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        return content[:start] + patch + content[start + len(patch) :]
    return content


def _valid(data: SegmentationData, num_classes: int) -> None:
    n, h, w = data.images.shape
    assert n >= 1 and h >= 1 and w >= 1
    assert data.images.dtype == data.masks.dtype == torch.uint8 and data.masks.shape == data.images.shape
    assert int(data.masks.max()) < num_classes and data.num_classes == num_classes
    if data.test_images is not None:
        assert data.test_images.dtype == torch.uint8 and tuple(data.test_images.shape[1:]) == (h, w)


@fuzz(examples=200)
@given(
    members=st.one_of(near_valid_members(), st.dictionaries(KEYS, arrays(), max_size=3)),
    compressed=st.booleans(),
    num_classes=st.one_of(st.just(5), st.integers(2, 6), st.integers(-2, 300)),
    data=st.data(),
)
def test_any_npz_loads_valid_or_is_refused(scratch, members, compressed, num_classes, data):
    path = scratch / "fuzz.npz"
    path.write_bytes(data.draw(damaged(npz_bytes(members, compressed))))
    refused_or(lambda: load_npz(path, num_classes=num_classes), lambda d: _valid(d, num_classes))


@fuzz(examples=150)
@given(
    prefix=st.sampled_from([b"", b"PK", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY", b"\x93NUMPY\x01\x00"]),
    rest=st.binary(max_size=600),
)
def test_any_bytes_load_valid_or_are_refused(scratch, prefix, rest):
    path = scratch / "bytes.npz"
    path.write_bytes(prefix + rest)
    refused_or(lambda: load_npz(path), lambda d: _valid(d, 5))


# ---------------------------------------------------------------------------------------------------------
# The config parser: dicts (the Python API), TOML files, --set and --X-param strings

NAMES = {
    "arch": sorted(REGISTRY.specs["architecture"]),
    "loss": sorted(REGISTRY.specs["loss"]),
    "balancer": sorted(REGISTRY.specs["balancer"]) + ["classweights+oversample", "none+none", "+"],
    "data": sorted(REGISTRY.specs["dataset"]),
}
PARAM_NAMES = sorted(
    {field for entry in REGISTRY.all() for field in entry.spec.params.model_fields}
    | {"classweights", "oversample"}
)
SECTIONS = {"data": DataConfig, "augment": AugmentConfig, "train": TrainConfig}
SETTING_PATHS = ["seed"] + [f"{s}.{f}" for s, model in SECTIONS.items() for f in model.model_fields]
SETTING_PATHS += [f"{s}.{f}" for s in ("arch", "loss", "balancer") for f in ("name", "params")]
SETTING_PATHS += [f"{s}.params.{p}" for s in ("arch", "loss", "balancer", "data") for p in PARAM_NAMES[:12]]

WORDS = st.text(max_size=8)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-3, 300),
    st.integers(),
    st.floats(),
    st.floats(0, 1),
    WORDS,
    st.sampled_from(["auto", "cpu", "none", "flips", "standard", "outliers", "onecycle", "median"]),
    st.datetimes(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(WORDS, inner, max_size=3)),
    max_leaves=6,
)


def _params():
    return st.dictionaries(st.one_of(st.sampled_from(PARAM_NAMES), WORDS), VALUES, max_size=3)


def _choice(section: str):
    name = st.one_of(st.sampled_from(NAMES[section]), WORDS)
    choices = [
        st.fixed_dictionaries({"name": name}, optional={"params": st.one_of(_params(), VALUES)}),
        VALUES,
    ]
    if section == "balancer":  # a composition: params sit in one table per part
        parts = st.dictionaries(
            st.sampled_from(["classweights", "oversample", "none"]),
            st.one_of(_params(), st.integers(1, 9), VALUES),
        )
        choices.append(st.fixed_dictionaries({"name": st.just("classweights+oversample"), "params": parts}))
    return st.one_of(*choices)


def _section(model):
    keys = st.one_of(st.sampled_from(sorted(model.model_fields)), WORDS)
    return st.one_of(st.dictionaries(keys, st.one_of(VALUES, _params()), max_size=4), VALUES)


PLUGIN_CONFIGS = st.fixed_dictionaries(
    {}, optional={section: _choice(section) for section in ("arch", "loss", "balancer")}
)  # no other section to fail first: these reach the plugins' own parameter checks
CONFIGS = st.one_of(
    PLUGIN_CONFIGS,
    st.fixed_dictionaries(
        {},
        optional={
            "seed": VALUES,
            "arch": _choice("arch"),
            "loss": _choice("loss"),
            "balancer": _choice("balancer"),
            "data": _section(DataConfig),
            "augment": _section(AugmentConfig),
            "train": _section(TrainConfig),
            "extra": VALUES,
        },
    ),
)


def parse(base: Any = None, settings_: list[str] = (), plugin_params: dict | None = None):
    config, cli = build_config(base, settings=list(settings_), plugin_params=plugin_params)
    return resolve(config, REGISTRY, cli)


def _resolved_ok(resolved) -> None:
    assert resolved.config.arch.name in REGISTRY.specs["architecture"]
    # what the store keeps must be plain JSON, finite numbers included
    json.dumps(resolved.config.model_dump(mode="json"), allow_nan=False)


@fuzz(examples=250)
@given(base=CONFIGS)
def test_any_config_dict_resolves_or_is_refused(base):
    refused_or(lambda: parse(base), _resolved_ok)


def _toml_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # inf and -inf are TOML too
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        items = [_toml_value(v) for v in value]
        return None if None in items else "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        items = [(json.dumps(k), _toml_value(v)) for k, v in value.items()]
        return (
            None
            if any(v is None for _, v in items)
            else "{" + ", ".join(f"{k} = {v}" for k, v in items) + "}"
        )
    return None


@fuzz(examples=150)
@given(base=CONFIGS, noise=st.one_of(st.just(""), st.text(max_size=30)))
def test_any_toml_file_resolves_or_is_refused(scratch, base, noise):
    lines = [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in base.items()]
    assume(all("= None" not in line for line in lines))
    path = scratch / "fuzz.toml"
    path.write_bytes(("\n".join(lines) + "\n" + noise).encode("utf-8", "surrogatepass"))
    refused_or(lambda: parse(read_toml(path)), _resolved_ok)


ASSIGNMENTS = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda key, value: f"{key}={value}",
        st.one_of(st.sampled_from(SETTING_PATHS), WORDS),
        st.one_of(WORDS, VALUES.map(lambda v: json.dumps(v, default=str)), st.text(max_size=20)),
    ),
)


@fuzz(examples=250)
@given(
    settings_=st.lists(ASSIGNMENTS, max_size=4),
    plugin_params=st.dictionaries(
        st.sampled_from(["arch", "loss", "balancer", "data"]), st.lists(ASSIGNMENTS, max_size=3)
    ),
    base=st.one_of(st.just({}), CONFIGS),
)
def test_any_set_and_param_strings_resolve_or_are_refused(settings_, plugin_params, base):
    refused_or(lambda: parse(base, settings_, plugin_params), _resolved_ok)
