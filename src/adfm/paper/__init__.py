"""The AD-FM paper's numbers (the CSVs beside this file, see README.md): one reader for the tables
stage, the figures and the config check, and how a table's configured rows map onto the paper's."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def exists(name: str) -> bool:
    return resources.files(__name__).joinpath(name).is_file()


def read(name: str) -> pd.DataFrame:
    """A paper CSV as text cells (an empty cell: a value the paper does not report)."""
    with resources.files(__name__).joinpath(name).open() as handle:
        return pd.read_csv(handle, keep_default_na=False, dtype=str)


def matching_rows(paper: pd.DataFrame, match: dict) -> pd.Series:
    """Which paper rows a config row's `match` selects (all its keys equal); a key that is not a
    column of the paper selects none."""
    if not set(match) <= set(paper.columns):
        return pd.Series(False, index=paper.index)
    return (paper[list(match)] == pd.Series(match, dtype=str)).all(axis=1)


def row_problems(spec: dict) -> list[str]:
    """What is wrong with a table's configured rows against its paper CSV, each naming the row:
    a match key that is no row key of the table, a match selecting several paper rows, two config
    rows for one table row. A match selecting none is a row the paper lacks: it is added."""
    paper = read(spec["paper"])
    keys = [k for k in ["group", *spec["keys"]] if k in paper.columns]
    problems, seen = [], {}
    for entry in spec["rows"]:
        match = {key: str(value) for key, value in entry["match"].items()}
        unknown = [key for key in match if key not in keys]
        if unknown:
            problems.append(
                f"rows: {entry['match']} names {unknown}, not row keys of {spec['paper']} (its row keys: {keys})"
            )
            continue
        hit = matching_rows(paper, match)
        if hit.sum() > 1:
            problems.append(
                f"rows: {entry['match']} matches {hit.sum()} rows of {spec['paper']}; name more of its row keys {keys}"
            )
            continue
        # a row the paper lacks is known by its match
        row = int(hit.idxmax()) if hit.any() else tuple(sorted(match.items()))
        if row in seen:
            problems.append(f"rows: {entry['match']} and {seen[row]} fill the same row of {spec['paper']}")
        seen[row] = entry["match"]
    return problems
