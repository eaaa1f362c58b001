"""The embedded synthetic Mars-like dataset, so every command works on a fresh machine."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness import hookimpl
from harness.data import SegmentationData
from harness.data.synthetic import synthetic
from harness.specs import DatasetSpec


class SyntheticParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(512, ge=2, le=200_000, description="Number of labelled (training_set) images.")
    test_n: int = Field(64, ge=0, le=200_000, description="Number of unlabelled test_set images.")
    height: int = Field(64, ge=8, le=2048, description="Image height in pixels.")
    width: int = Field(128, ge=8, le=2048, description="Image width in pixels.")
    seed: int = Field(0, ge=0, description="Generator seed (the data, not the run).")


def build(params: SyntheticParams) -> SegmentationData:
    return synthetic(
        n=params.n, test_n=params.test_n, height=params.height, width=params.width, seed=params.seed
    )


@hookimpl
def harness_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="synthetic",
            summary="Deterministic Mars-like terrain (soil, bedrock, sand, sparse big rocks), 64x128",
            params=SyntheticParams,
            build=build,
        )
    ]
