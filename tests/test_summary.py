"""The at-a-glance summary (adfm.evaluation.summary) from hand-made tables with run and not-run cells."""

import numpy as np
import pandas as pd
import pytest

from adfm.cli import main
from adfm.evaluation import summary, summary_cells, summary_figure
from adfm.io import InputError

KEYS = ["group", "model", "scale"]
NO_MPDD, NO_KEY, MISSING = "not run: no mpdd predictions", "not run: no API key", "not run: 1 of 2 datasets missing"


def cell(group, model, scale, column, ours, paper, status="ok"):
    diff = round(ours - paper, 2) if ours is not None and paper is not None else None
    return {
        "group": group,
        "model": model,
        "scale": scale,
        "column": column,
        "ours": ours,
        "paper": paper,
        "diff": diff,
        "status": status,
        "protocol": "",
        "images": None,
        "demo": False,
    }


TABLE2 = [
    cell("CLIP-based", "WinCLIP (tau=0.5)", "", "VisA", 44.0, 43.4),
    cell("CLIP-based", "WinCLIP (tau=0.5)", "", "MPDD", None, 72.1, NO_MPDD),
    cell("CLIP-based", "WinCLIP (tau=0.5)", "", "Avg", None, 57.75, MISSING),
    cell("Ours", "AD-FM", "7B", "VisA", 70.0, 80.0),
    cell("Ours", "AD-FM", "7B", "MPDD", 60.0, 61.5),
    cell("Ours", "AD-FM", "7B", "Avg", 65.0, 70.75),
    cell("Proprietary", "GPT-4o", "", "VisA", None, 70.0, NO_KEY),
    cell("Proprietary", "GPT-4o", "", "MPDD", None, 66.0, NO_KEY),
    cell("Proprietary", "GPT-4o", "", "Avg", None, 68.0, NO_KEY),
    cell("", "my-ablation", "", "VisA", 50.0, None),  # a row the paper lacks
    cell("", "my-ablation", "", "MPDD", 52.0, None),
    cell("", "my-ablation", "", "Avg", 51.0, None),
]
TABLE3 = [cell("Proprietary", "GPT-4o", "", column, None, 70.0, NO_KEY) for column in ("Defect Analysis", "Avg")]


@pytest.fixture
def tables(tmp_path):
    paths = {}
    for name, records in [("table2", TABLE2), ("table3", TABLE3)]:
        paths[name] = tmp_path / f"{name}.csv"
        pd.DataFrame(records).to_csv(paths[name], index=False)
    return paths


def test_cells_are_sorted_into_compared_no_paper_value_and_not_run(tables):
    frame = summary.cells([tables["table2"]], tolerance=2).set_index(["row", "column"])
    assert frame.loc[("AD-FM 7B", "MPDD"), "kind"] == summary.COMPARED
    assert frame.loc[("AD-FM 7B", "MPDD"), "within"]
    assert not frame.loc[("AD-FM 7B", "VisA"), "within"]
    assert frame.loc[("my-ablation", "VisA"), "kind"] == summary.NO_PAPER
    assert frame.loc[("GPT-4o", "Avg"), ["kind", "reason"]].tolist() == [summary.NOT_RUN, NO_KEY]
    # one letter per reason within a table, in the order they first appear
    assert frame.loc[("WinCLIP (tau=0.5)", "MPDD"), "mark"] == "a"
    assert frame.loc[("WinCLIP (tau=0.5)", "Avg"), "mark"] == "b"
    assert frame.loc[("GPT-4o", "VisA"), "mark"] == frame.loc[("GPT-4o", "MPDD"), "mark"] == "c"
    assert frame.loc[("AD-FM 7B", "VisA"), "mark"] == ""


def test_rows_are_named_by_their_keys_and_by_the_group_only_where_it_tells_them_apart(tmp_path):
    path = tmp_path / "table1.csv"
    records = [cell("Ours", "AD-FM", "7B", "VisA", 70.0, 80.0), cell("Other", "AD-FM", "7B", "VisA", 60.0, 61.0)]
    pd.DataFrame(records).to_csv(path, index=False)
    assert summary.read_table(path)["row"].tolist() == ["Ours AD-FM 7B", "Other AD-FM 7B"]
    pd.DataFrame(records[:1]).to_csv(path, index=False)
    assert summary.read_table(path)["row"].tolist() == ["AD-FM 7B"]


def test_the_differences_are_laid_out_as_the_paper_table_with_empty_cells(tables):
    frame = summary.cells([tables["table2"]], tolerance=2)
    diffs = summary_figure.grid(frame, "diff")
    assert diffs.index.tolist() == ["WinCLIP (tau=0.5)", "AD-FM 7B", "GPT-4o", "my-ablation"]
    assert diffs.columns.tolist() == ["VisA", "MPDD", "Avg"]
    drawn = diffs.notna().to_numpy()
    assert drawn.tolist() == [[True, False, False], [True, True, True], [False, False, False], [False, False, False]]
    assert diffs.loc["AD-FM 7B", "VisA"] == -10.0


def test_figure_has_a_scatter_and_a_heatmap_per_table_with_a_run_cell(tables):
    frame = summary.cells([tables["table2"], tables["table3"]], tolerance=2)
    fig = summary_figure.figure(frame, tolerance=2)
    scatter, heatmap = fig.axes[:2]
    assert len(fig.axes) == 3  # Table 3 ran nothing: no panels; the third axis is the colour bar
    points = {
        tuple(np.round(offsets, 2)) for collection in scatter.collections[1:] for offsets in collection.get_offsets()
    }
    assert points == {(43.4, 44.0), (80.0, 70.0), (61.5, 60.0), (70.75, 65.0)}  # (paper, ours), compared only
    assert scatter.get_xlim() == scatter.get_ylim()
    assert len(scatter.get_legend().get_texts()) == 3  # the band, WinCLIP and AD-FM
    image = heatmap.get_images()[0].get_array()
    assert image.mask.tolist() == [[False, True, True], [False, False, False], [True, True, True], [True, True, True]]
    texts = [text.get_text() for text in heatmap.texts]
    assert "-10.0" in texts and "c" in texts
    assert f"c: {NO_KEY}" in texts[-1] and "d: run; the paper prints no value here" in texts[-1]


def test_only_the_tables_given_are_drawn(tables):
    frame = summary.cells([tables["table3"]], tolerance=2)
    assert summary_cells.shown_tables(frame) == []
    fig = summary_figure.figure(frame, tolerance=2, demo_note="Demo numbers: a tiny random model.")
    assert len(fig.axes) == 1 and fig.get_suptitle() == "Demo numbers: a tiny random model."


def test_one_sentence_per_table_with_counts_and_the_largest_gap(tables):
    frame = summary.cells([tables["table2"], tables["table3"]], tolerance=2)
    assert summary.sentences(frame, 2) == [
        "Table 2: 2 of 4 run cells within ±2 points of the paper; largest gap: AD-FM 7B, VisA: ours 70.00, "
        "paper 80.00 (-10.00); 5 cells not run, 3 cells without a paper value.",
        "Table 3: no run cell beside a paper value (2 cells not run).",
    ]
    wide = summary.cells([tables["table2"]], tolerance=10)
    assert summary.sentences(wide, 10)[0].startswith("Table 2: 4 of 4 run cells within ±10 points")


def test_command_writes_every_output(tables, tmp_path):
    out = {
        name: tmp_path / f"summary.{suffix}"
        for name, suffix in [("png", "png"), ("pdf", "pdf"), ("csv", "csv"), ("sentences", "txt"), ("html", "html")]
    }
    note = "Demo numbers: a tiny randomly initialised model on generated miniature datasets."
    args = [
        "summary",
        "--tables",
        str(tables["table2"]),
        str(tables["table3"]),
        "--tolerance",
        "2",
        "--demo-note",
        note,
    ]
    assert main(args + [arg for name, path in out.items() for arg in (f"--{name}", str(path))]) == 0
    assert out["png"].read_bytes()[:4] == b"\x89PNG" and out["pdf"].read_bytes()[:4] == b"%PDF"
    drawn = pd.read_csv(out["csv"], keep_default_na=False)
    assert len(drawn) == len(TABLE2) + len(TABLE3)
    assert drawn["kind"].value_counts().to_dict() == {"not run": 7, "compared": 4, "no paper value": 3}
    frame = summary.cells([tables["table2"], tables["table3"]], tolerance=2)
    assert out["sentences"].read_text().splitlines()[:2] == [note, summary.sentences(frame, 2)[0]]
    page = out["html"].read_text()
    assert page.index(note) < page.index("Table 2: 2 of 4") < page.index("data:image/png")
    assert f'title="{NO_MPDD}"' in page and 'title="ours 70.00, paper 80.00"' in page
    assert "data:image/png;base64," in page and "Table 3" not in page.split("<table>")[1]


def test_a_file_that_is_no_table_is_named(tmp_path):
    bad = tmp_path / "table9.csv"
    bad.write_text("model,ours\nx,1\n")
    with pytest.raises(InputError, match="table9.csv.*no column column, paper, diff, status"):
        summary.cells([bad], tolerance=2)
    bad.write_text("model,column,ours,paper,diff,status\nx,VisA,high,1,,ok\n")
    with pytest.raises(InputError, match="table9.csv: column 'ours' is not numeric"):
        summary.cells([bad], tolerance=2)
