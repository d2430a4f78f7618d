"""The summary's HTML fragment, the report's front page: the sentences, the figure and each table's
differences as an HTML table whose empty cells give their reason on hover."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from adfm.evaluation.drawing import pyplot
from adfm.evaluation.summary_cells import COMPARED, shown_tables
from adfm.evaluation.summary_figure import CMAP

STYLE = (
    ".adfm-summary table {border-collapse: collapse; margin: 1em 0; font-size: small} "
    ".adfm-summary td, .adfm-summary th {border: 1px solid #ccc; padding: 2px 6px; text-align: right}"
)


def _html_cell(item: pd.Series, limit: float, cmap) -> str:
    if item["kind"] != COMPARED:
        return f'<td title="{html.escape(item["reason"])}" style="color:#777">{html.escape(item["mark"])}</td>'
    from matplotlib.colors import to_hex

    colour = to_hex(cmap(0.5 + item["diff"] / (2 * limit)))
    hover = f"ours {item['ours']:.2f}, paper {item['paper']:.2f}"
    text = "white" if abs(item["diff"]) > 0.6 * limit else "black"  # as in the figure: readable on dark cells
    return f'<td title="{hover}" style="background:{colour};color:{text}">{item["diff"]:+.2f}</td>'


def html_grid(table: pd.DataFrame, tolerance: float) -> str:
    """A table's differences as an HTML table in the paper's layout; hover gives the values or the reason."""
    cmap = pyplot().get_cmap(CMAP)
    limit = max(tolerance, float(table["diff"].abs().max()) if table["diff"].notna().any() else 0.0)
    columns = list(dict.fromkeys(table["column"]))
    lines = [
        f"<table><caption>{html.escape(table['table'].iloc[0])}: ours - paper (points)</caption>",
        "<tr><th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>",
    ]
    for row, items in table.groupby("row", sort=False):
        by_column = items.set_index("column")
        lines.append(
            f"<tr><th>{html.escape(row)}</th>"
            + "".join(_html_cell(by_column.loc[c], limit, cmap) for c in columns)
            + "</tr>"
        )
    return "\n".join([*lines, "</table>"])


def html_summary(frame: pd.DataFrame, lines: list[str], demo_note: str, png: Path, tolerance: float) -> str:
    """The report's front page: the demo's warning, the sentences, the figure, then each table's differences."""
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    warning = f"<p><strong>{html.escape(demo_note)}</strong></p>\n" if demo_note else ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    grids = "\n".join(html_grid(table, tolerance) for table in shown_tables(frame))
    return (
        f'<div class="adfm-summary">\n<style>{STYLE}</style>\n{warning}<ul>{items}</ul>\n'
        f'<img alt="ours against the paper" style="max-width:100%" src="data:image/png;base64,{image}">\n'
        f"<p>Empty cells were not run or have no paper value: hover over one for why.</p>\n{grids}\n</div>\n"
    )
