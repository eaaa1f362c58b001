"""The augmentation vocabulary: named, validated pipeline steps and the presets built from them.

A pipeline is a list of `TransformSpec` steps (a name from a fixed vocabulary, a probability and
allow-listed arguments), plus an optional stronger list for the rows a balancer marks "strong"
(oversampled copies, which should not be pixel-identical duplicates of their originals).

Arguments are checked by pydantic when the config is built, so a typo or an out-of-range value fails
before any data is loaded. This module only describes pipelines; two backends run them:
`harness.augment.albumentations` (per image, on the host) and `harness.augment.batched` (per batch, on
the device), and `harness.augment.backend` picks one.

Mask safety is not configurable: geometric steps always warp masks with nearest-neighbour interpolation
and fill the pixels they expose with 0 (background, which the loss and the metric ignore). Images are
filled with a constant (0 unless `fill` is set) rather than reflected: albumentations uses one border
mode for image and mask, and a reflected image under a zero mask would show terrain labelled "ignore".
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from harness.errors import ConfigError
from harness.parsing import did_you_mean

TransformName = Literal[
    "hflip", "rot90", "affine", "brightness_contrast", "solarize", "elastic", "grid_distortion", "noise"
]

# Strong rows get every step at least this often; flips stop at 0.5, where a mirror adds the most variety.
STRONG_MIN_P = 0.8
_FLIP_MAX_VARIETY_P = 0.5


# ---------------------------------------------------------------------------------------------------------
# Argument types: what the config may set per transform, with the ranges albumentations would enforce


def _nondecreasing(value: Any) -> Any:
    if isinstance(value, tuple) and value[0] > value[1]:
        raise ValueError(f"a range must be (low, high), got ({value[0]}, {value[1]})")
    return value


def _range_of(item: Any) -> Any:
    """A scalar or an ordered (low, high) pair of `item` (albumentations reads scalars per transform)."""
    return item | Annotated[tuple[item, item], AfterValidator(_nondecreasing)]


def _per_axis(kind: Any) -> Any:
    return kind | Annotated[dict[Literal["x", "y"], kind], Field(min_length=1)]


_Unit = Annotated[float, Field(ge=0, le=1)]
_Signed = Annotated[float, Field(ge=-1, le=1)]
_UnitPair = Annotated[tuple[_Unit, _Unit], AfterValidator(_nondecreasing)]
_SignedPair = Annotated[tuple[_Signed, _Signed], AfterValidator(_nondecreasing)]
_Fill = Annotated[float, Field(ge=0, le=255)]

# Left out on purpose: interpolation, mask_interpolation, border_mode and fill_mask (mask safety),
# fit_output (changes the frame size, which a batch cannot hold) and per_channel (images are grayscale).
ALLOWED_PARAMS: dict[str, dict[str, Any]] = {
    "hflip": {},
    "rot90": {},
    "affine": {
        "scale": _per_axis(_range_of(Annotated[float, Field(gt=0)])),
        "translate_percent": _per_axis(_range_of(_Signed)),
        "translate_px": _per_axis(_range_of(int)),
        "rotate": _range_of(float),
        "shear": _per_axis(_range_of(float)),
        "keep_ratio": bool,
        "balanced_scale": bool,
        "fill": _Fill,
    },
    "brightness_contrast": {
        "brightness_limit": _range_of(_Signed),
        "contrast_limit": _range_of(_Signed),
        "brightness_by_max": bool,
        "ensure_safe_range": bool,
    },
    "solarize": {"threshold_range": _UnitPair},
    "elastic": {
        "alpha": Annotated[float, Field(ge=0)],
        "sigma": Annotated[float, Field(ge=1)],
        "approximate": bool,
        "same_dxdy": bool,
        "noise_distribution": Literal["gaussian", "uniform"],
        "fill": _Fill,
    },
    "grid_distortion": {
        "num_steps": Annotated[int, Field(ge=1)],
        "distort_limit": _range_of(_Signed),
        "normalized": bool,
        "fill": _Fill,
    },
    "noise": {
        "std_range": _UnitPair,
        "mean_range": _SignedPair,
        "noise_scale_factor": Annotated[float, Field(gt=0, le=1)],
    },
}

# Defaults sized for 64x128 frames (albumentations' own suit large photos: e.g. elastic sigma=50 is a
# near no-op here); step params override them key by key.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "affine": {"scale": (0.9, 1.1), "translate_percent": (-0.05, 0.05), "rotate": (-5.0, 5.0), "fill": 0},
    "brightness_contrast": {"brightness_limit": 0.15, "contrast_limit": 0.15},
    "elastic": {"alpha": 15.0, "sigma": 4.0, "fill": 0},
    "grid_distortion": {"num_steps": 5, "distort_limit": 0.2, "fill": 0},
    "noise": {"std_range": (0.01, 0.04)},
}


@functools.cache
def _adapter(name: str, key: str) -> TypeAdapter:
    return TypeAdapter(ALLOWED_PARAMS[name][key])


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against `name`'s allow-list and types; ValueError names the transform and argument."""
    allowed = ALLOWED_PARAMS[name]
    unknown = [key for key in params if key not in allowed]
    if unknown:
        valid = ", ".join(allowed) or "none"
        hint = did_you_mean(unknown[0], allowed)
        if "p" in unknown:
            hint = "; p is set on the step, beside params"
        listed = ", ".join(repr(key) for key in unknown)
        raise ValueError(f"{name} has no argument {listed}; valid arguments: {valid}{hint}")
    checked = {}
    for key, value in params.items():
        try:
            checked[key] = _adapter(name, key).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{name} argument {key!r}: {_reasons(exc, value)} (got {value!r})") from None
    if "translate_percent" in checked and "translate_px" in checked:
        raise ValueError(f"{name} takes translate_percent or translate_px, not both")
    return checked


def _reasons(exc: ValidationError, value: Any) -> str:
    """The messages of the alternative the value was meant as (a list means a range), else of them all."""
    errors = exc.errors()
    kind = "tuple" if isinstance(value, list | tuple) else "dict" if isinstance(value, dict) else "scalar"
    meant = [item for item in errors if _union_branch(item["loc"]) == kind]
    messages = dict.fromkeys(item["msg"].removeprefix("Value error, ") for item in meant or errors)
    return " or ".join(messages)


def _union_branch(loc: tuple) -> str | None:
    # A union tags each error with its alternative's type as loc[0]; other errors start with an index.
    if not loc or not isinstance(loc[0], str):
        return None
    # Checked in this order because a dict alternative's tag also names the tuples inside it.
    matches = [kind for kind in ("dict", "tuple") if f"{kind}[" in loc[0]]
    return matches[0] if matches else "scalar"


# ---------------------------------------------------------------------------------------------------------
# Config models and presets


class TransformSpec(BaseModel):
    """One pipeline step: a transform name, its probability and allow-listed albumentations arguments."""

    model_config = ConfigDict(extra="forbid")

    name: TransformName
    p: float = Field(0.5, ge=0, le=1, description="Probability that the step is applied to an image.")
    params: dict[str, Any] = Field(default_factory=dict, description="Arguments of the transform.")

    @field_validator("params")
    @classmethod
    def _check_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        # Without a valid name there is no allow-list; the name's own error is already reported.
        return params if name is None else validate_params(name, params)


class AugmentPipeline(BaseModel):
    """Steps for ordinary rows and, optionally, the steps for rows marked strong (see `strong`)."""

    model_config = ConfigDict(extra="forbid")

    steps: list[TransformSpec]
    strong_steps: list[TransformSpec] | None = None

    def strong(self) -> list[TransformSpec]:
        """The steps for strong rows: `strong_steps`, or else `steps` made more frequent plus an affine.

        Each p is raised to STRONG_MIN_P (hflip to 0.5); an affine is appended when there is none, so a
        copy differs from its original in geometry too. An empty `steps` stays empty ("none" means none).
        """
        if self.strong_steps is not None:
            return list(self.strong_steps)
        if not self.steps:
            return []
        raised = [
            step.model_copy(
                update={"p": max(step.p, _FLIP_MAX_VARIETY_P if step.name == "hflip" else STRONG_MIN_P)}
            )
            for step in self.steps
        ]
        if not any(step.name == "affine" for step in raised):
            raised.append(TransformSpec(name="affine", p=STRONG_MIN_P))
        return raised


def _pipeline(*steps: dict[str, Any]) -> AugmentPipeline:
    return AugmentPipeline.model_validate({"steps": list(steps)})


# rot90 is in no preset: rover frames have the sky up and the horizon across, so a quarter turn makes
# views the rover never sees (and a non-square frame cannot turn 90 degrees in place). It stays opt-in.
_STANDARD = (
    {"name": "hflip", "p": 0.5},
    {"name": "affine", "p": 0.7},
    {"name": "brightness_contrast", "p": 0.5},
    {"name": "noise", "p": 0.3},
)
PRESETS: dict[str, AugmentPipeline] = {
    "none": _pipeline(),
    "flips": _pipeline({"name": "hflip", "p": 0.5}),
    # Same transforms, order and settings as the data tests' "standard", so a seed gives the same images.
    "standard": _pipeline(*_STANDARD),
    "strong": _pipeline(
        {"name": "hflip", "p": 0.5},
        {
            "name": "affine",
            "p": 0.8,
            "params": {"scale": (0.8, 1.2), "translate_percent": (-0.1, 0.1), "rotate": (-10, 10)},
        },
        {"name": "grid_distortion", "p": 0.3},
        {
            "name": "brightness_contrast",
            "p": 0.7,
            "params": {"brightness_limit": 0.25, "contrast_limit": 0.25},
        },
        {"name": "noise", "p": 0.4, "params": {"std_range": (0.01, 0.06)}},
    ),
}


def pipeline_from_config(
    preset: str, steps: list[dict] | None = None, strong_steps: list[dict] | None = None
) -> AugmentPipeline:
    """The custom `steps` when given (even empty), else the preset's; `strong_steps` replaces the default.

    Raises ConfigError with one line: the unknown preset and the choices, or the bad step's index and field.
    """
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown augmentation preset {preset!r}; choose one of: {', '.join(PRESETS)}"
            f"{did_you_mean(preset, PRESETS)}"
        )
    # A copy, so a caller that edits its pipeline cannot change the preset for everyone else.
    base = PRESETS[preset].model_copy(deep=True)
    if steps is not None:
        base = AugmentPipeline(steps=_parse_steps(steps, "augment.steps"))
    if strong_steps is not None:
        strong = _parse_steps(strong_steps, "augment.strong_steps")
        base = AugmentPipeline(steps=base.steps, strong_steps=strong)
    return base


def _parse_steps(raw: Any, where: str) -> list[TransformSpec]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(
            f'{where} must be a list of tables like {{name = "hflip", p = 0.5}}, got {type(raw).__name__}'
        )
    specs = []
    for index, item in enumerate(raw):
        try:
            specs.append(TransformSpec.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(_describe_step_error(exc, f"{where}[{index}]")) from None
    return specs


def _describe_step_error(exc: ValidationError, where: str) -> str:
    parts = []
    for item in exc.errors():
        field = ".".join(str(part) for part in item["loc"])
        got = item.get("input")
        # Params messages already quote the offending value; a dict echo would only repeat the step.
        shown = "" if field == "params" or isinstance(got, dict) else f" (got {got!r})"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}{'.' + field if field else ''}: {message}{shown}")
    return "; ".join(parts)
