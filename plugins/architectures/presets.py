"""Presets: the report's two best networks as named architectures (`--arch seed-full`, `--arch seed-lite`).

The report built its networks by swapping encoder, bottleneck and decoder blocks and keeping what raised
mean IoU. A preset is `unetpp` or `unet` whose block choices default to one of those networks; its params
are the underlying architecture's, so `--arch seed-lite --arch-param width=32` or
`--arch-param encoder_params.reduction=4` still work, and the run store records every choice.

- seed-full, the report's "all advanced blocks" network (mIoU 0.561): U-Net++ with dilated encoder
  blocks, a residual-dense-attention + global-context bottleneck, SE decoder blocks and cross-branch
  attention on the skips.
- seed-lite, its "bottleneck-only" network (0.563): U-Net with SE blocks and a global-context
  bottleneck (an SE stage then the context unit, since gc itself only reweights).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures import unet, unetpp

SEED_FULL = {"encoder_block": "dilated", "bottleneck": "rdam+gc", "decoder_block": "se", "skip_fusion": "cba"}
SEED_LITE = {"encoder_block": "se", "bottleneck": "se+gc", "decoder_block": "se"}


def with_defaults(base: type[BaseModel], name: str, defaults: dict[str, Any]) -> type[BaseModel]:
    """`base` with some fields' defaults replaced (types, bounds, descriptions and validators kept)."""
    fields = {}
    for key, value in defaults.items():
        field = base.model_fields[key]
        fields[key] = (field.annotation, Field(value, description=field.description))
    return create_model(name, __base__=base, __doc__=f"{base.__doc__} Preset defaults: {defaults}.", **fields)


SeedFullParams = with_defaults(unetpp.UNetPlusPlusParams, "SeedFullParams", SEED_FULL)
SeedLiteParams = with_defaults(unet.UNetParams, "SeedLiteParams", SEED_LITE)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="seed-full",
            summary="Preset: U-Net++, dilated encoder, rdam+gc bottleneck, SE decoder, cba skips "
            "(report: all advanced blocks, 0.561)",
            params=SeedFullParams,
            build=unetpp.build,
            input_multiple=lambda params: 2**params.depth,
            params_count=1_974_030,
            deep_supervision=True,  # as unetpp: training mode returns a list of logits
        ),
        ArchitectureSpec(
            name="seed-lite",
            summary="Preset: U-Net, SE encoder/decoder, se+gc bottleneck (report: bottleneck-only, 0.563)",
            params=SeedLiteParams,
            build=unet.build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_004_054,
        ),
    ]
