"""Settings of the evaluation stages: scores, tables, figures, report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from adfm import targets
from adfm.protocol import prompt_answer_format
from adfm.settings import Settings, option

METRICS = Literal["accuracy", "balanced_accuracy", "accuracy_youden", "balanced_accuracy_youden"]


@dataclass(frozen=True)
class TableRow(Settings):
    """A paper row we reproduce (config `tables.<name>.rows[]`), with what the workflow adds."""

    STAGE = "adfm table --settings: rows"

    match: dict[str, Any] = option(help="key column values of the paper row (a match none has: a new row)")
    run: str | None = option(None, "run or baseline filling the row; null: none does (`skip` says why)")
    metric: METRICS = option("accuracy", "metrics column filling the row (the paper's number's metric)")
    prompt: Literal["reasoning", "mmad"] = option(
        "reasoning",
        "reasoning: the run's predictions on its split; mmad: its answers to MMAD's Anomaly "
        "Detection question per MMAD source (select dataset only)",
    )
    paper_protocol: str | None = option(None, "how the paper's number was obtained (for the notes)")
    skip: str | None = option(None, "set by the workflow: why the row's model cannot run here (its status)")
    eval_rows: Literal["test", "all"] = option("test", "set by the workflow: which split rows the run scores")
    reasoning: str | None = option(None, "set by the workflow: the run's prompt mode (none: a CLIP scorer)")


@dataclass(frozen=True)
class TableSettings(Settings):
    """One paper table (config `tables.<name>`) and what the workflow adds (`adfm table`)."""

    STAGE = "adfm table --settings"

    paper: str = option(help="the paper's numbers (src/adfm/paper/<file>)")
    keys: list[str] = option(help="columns identifying a row of the paper's table")
    columns: dict[str, str] = option(help="paper column -> dataset (select dataset) or MMAD question type")
    rows: list[TableRow] = option(help="paper rows we reproduce; other rows keep only the paper's value")
    select: Literal["dataset", "question_type"] = option("dataset", "what a column is: a dataset or a question type")
    mmad_sources: dict[str, str] = option(factory=dict, help="paper column -> MMAD source dataset (prompt mmad rows)")
    demo: str | None = option(None, "the demo's warning heading the Markdown and HTML copies (none: not the demo)")

    @classmethod
    def from_config(cls, config: dict, table: str, environ=None) -> TableSettings:
        """The table's config entry with the skip reasons of this environment and, for the demo, its warning."""
        return cls.from_dict(
            {
                **config["tables"][table],
                "rows": targets.table_rows(config, table, environ),
                "demo": targets.demo_note(config),
            }
        )


@dataclass(frozen=True)
class FigureSettings(Settings):
    """One figure (config `figures.<name>`) of `adfm figure`."""

    STAGE = "adfm figure --settings"

    kind: Literal["cases", "reward_schemes", "zero_variance"] = option(
        help="what is drawn: cases (Figure 3), reward_schemes (Figure 4), zero_variance (Figure 5)"
    )
    title: str = option(help="label of the run in the title (config title, else the run's name)")
    rewards: dict[str, Any] = option(
        factory=dict, help="reward options (config rewards, with the run's answer format, reasoning and seed)"
    )
    paper: str = option("fig5_zero_variance.csv", "the paper's values (src/adfm/paper/<file>; zero_variance)")
    rows: Literal["train", "test", "all"] | None = option(
        None, "the split rows the images were drawn from (zero_variance, for the label)"
    )

    @classmethod
    def from_config(cls, config: dict, figure: str) -> FigureSettings:
        spec = config["figures"][figure]
        run = config["runs"][spec["run"]]
        rewards = {
            **config["rewards"],
            "answer_format": prompt_answer_format(config["prompts"]),
            "reasoning": run["reasoning"],
            "random_seed": config["seed"],
        }
        given = {key: spec[key] for key in ("paper", "rows") if spec.get(key)}
        return cls.from_dict(
            {"kind": spec["kind"], "title": spec.get("title") or spec["run"], "rewards": rewards, **given}
        )
