"""Settings of the model stages (workflow/rules/models.smk) and the model options every stage shares."""

from __future__ import annotations

from dataclasses import dataclass

from adfm.settings import Settings, option


@dataclass(frozen=True)
class ModelSettings(Settings):
    """How a model is loaded and how its processor sizes images (config `model`)."""

    STAGE = "model"

    dtype: str = option("bfloat16", "torch dtype of the weights (config model.dtype)")
    min_pixels: int = option(3136, "smallest image area the processor keeps, in pixels (config model.min_pixels)")
    max_pixels: int = option(262144, "largest image area the processor keeps, in pixels (config model.max_pixels)")

    @classmethod
    def from_config(cls, config: dict) -> ModelSettings:
        model = config["model"]
        return cls(dtype=model["dtype"], min_pixels=model["min_pixels"], max_pixels=model["max_pixels"])
