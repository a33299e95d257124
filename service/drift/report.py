"""The drift report: what GET /model/drift answers and the gauges are made of."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FeatureDrift(BaseModel):
    name: str = Field(description="The model's feature name; x0, x1, ... for a model without.")
    score: float | None = Field(
        description="Population stability index of the window's rows against the training "
        "rows' bins; null until the window holds min_rows rows."
    )
    drifting: bool = Field(description="score above the threshold.")
    out_of_range: float | None = Field(
        description="Share of the window's rows outside the training rows' [min, max]."
    )


class DriftReport(BaseModel):
    model_version: int
    baseline: bool = Field(
        description="False for a model stored before training statistics were: no scores."
    )
    message: str = Field(description="What the figures are, or why there are none.")
    threshold: float = Field(description="Score above which a feature is drifting.")
    window_seconds: float = Field(description="How far back the rows counted go.")
    rows: int = Field(description="Rows predicted in the window, over every worker.")
    min_rows: int = Field(description="Rows the window needs before scores are given.")
    drifting: int = Field(description="Features whose score is above the threshold.")
    features: list[FeatureDrift] = Field(description="One per feature, in the model's order.")
