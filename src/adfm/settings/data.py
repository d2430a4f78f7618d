"""Settings of the data stages (workflow/rules/data.smk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adfm.settings import Settings, option


@dataclass(frozen=True)
class SplitSettings(Settings):
    """One evaluation protocol (config `protocols.<name>`) and the seed of its split (`adfm split`)."""

    STAGE = "adfm split --settings"

    kind: Literal["holdout", "transfer"] = option(
        help="holdout: split every dataset per category; transfer: train on some datasets, test on others"
    )
    train_fraction: float = option(help="fraction of each category's test split drawn for training (paper: 0.2)")
    seed: int = option(help="random seed of the drawing and of the references (config seed)")
    datasets: list[str] = option(factory=list, help="holdout: the datasets split per category")
    train: list[str] = option(factory=list, help="transfer: the training datasets")
    test: list[str] = option(factory=list, help="transfer: the test datasets (their whole test split)")

    @classmethod
    def from_config(cls, config: dict, protocol: str) -> SplitSettings:
        return cls.from_dict({**config["protocols"][protocol], "seed": config["seed"]})

    def roles(self) -> dict[str, str]:
        """dataset -> how its test split is used: holdout (drawn into train and test), train (the drawn
        part only), test (all of it)."""
        if self.kind == "holdout":
            return {name: "holdout" for name in self.datasets}
        return {**{name: "test" for name in self.test}, **{name: "train" for name in self.train}}
