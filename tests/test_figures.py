"""Figures 3-5 from hand-made predictions: cases, rewards, zero-variance shares, PNG + PDF + CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from adfm.evaluation.drawing import Outputs
from adfm.evaluation.figure_cases import pick_cases
from adfm.evaluation.figure_rewards import pick_responses, scheme_rewards, zero_variance
from adfm.evaluation.figures import run_figure
from adfm.protocol import format_response
from adfm.settings.evaluation import FigureSettings

GT = [[20.0, 20.0, 50.0, 50.0]]


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "query.png"
    pixels = np.full((112, 112, 3), 120, np.uint8)
    pixels[20:50, 20:50] = 250
    Image.fromarray(pixels).save(path)
    return str(path)


def rec(image, sample=0, boxes=(), answer="yes", label=1, category="wood", gt=GT, think="", name=None):
    response = format_response([list(b) for b in boxes], answer, think=think)
    return {
        "model": "m",
        "dataset": "mvtec_ad",
        "category": category,
        "image_path": name or image,
        "reference_path": image,
        "label": label,
        "sample": sample,
        "response": response,
        "answer": answer,
        "boxes": [list(b) for b in boxes],
        "frame": [112, 112],
        "gt_boxes": gt if label else [],
    }


def test_rewards_of_the_three_schemes(image):
    records = [rec(image, 0, boxes=[]), rec(image, 1, boxes=GT), rec(image, 2, boxes=[*GT, [80, 80, 100, 100]])]
    rewards = scheme_rewards(records, {"alpha": 0.3, "reasoning": "multi_stage"})
    assert rewards["r_cls"].tolist() == [1.0, 1.0, 1.0]
    # r_count: |m - n| = 1, 0, 1 -> 0.5, 1, 0.5 (x alpha); r_loc adds the matched mean GIoU (0, 1, 1)
    assert rewards["r_cls + r_count"].tolist() == pytest.approx([1.15, 1.3, 1.15])
    assert rewards["r_cls + r_loc"].tolist() == pytest.approx([1.15, 2.3, 2.15])


def test_zero_variance_share(image, tmp_path):
    same = [rec(image, s, boxes=GT, name="a.png") for s in range(3)]  # identical rewards everywhere
    count_differs = [
        rec(image, 0, boxes=GT, name="b.png"),
        rec(image, 1, boxes=[], name="b.png"),
        rec(image, 2, boxes=GT, name="b.png"),
    ]
    loc_differs = [rec(image, s, boxes=[[20 + s, 20, 50, 50]], name="c.png") for s in range(3)]
    table = zero_variance(same + count_differs + loc_differs, {"alpha": 0.3}).set_index("reward")
    assert table["zero_variance_pct"].to_dict() == pytest.approx(
        {"r_cls": 100.0, "r_cls + r_count": 200 / 3, "r_cls + r_loc": 100 / 3}, abs=0.01
    )
    assert table.loc["r_cls", "images"] == 3 and table.loc["r_cls", "responses_per_image"] == 3


def test_four_responses_spread_over_the_localisation_reward():
    rewards = pd.DataFrame({"sample": range(6), "r_cls + r_loc": [0.5, 2.0, 1.0, 1.5, 0.0, 1.2]})
    assert pick_responses(rewards) == [4, 2, 5, 1]  # lowest ... highest


def test_figure3_cases_prefer_the_kinds_of_the_paper(image):
    records = [
        rec(image, boxes=GT, name="good_loc.png"),
        rec(image, boxes=[[0, 0, 10, 10]], name="poor_loc.png", category="grid"),
        rec(image, boxes=[], answer="no", label=0, name="normal.png"),
        rec(image, boxes=GT, name="hedged.png", think="this might be normal variation", category="grid"),
        rec(image, boxes=[], answer="no", name="missed.png"),
    ]
    cases = pick_cases(records)
    assert [(c[1]["image_path"], c[2]) for c in cases] == [
        ("good_loc.png", True),
        ("normal.png", True),
        ("hedged.png", True),
        ("poor_loc.png", True),
    ]
    only_wrong = pick_cases([rec(image, answer="no", name="x.png"), rec(image, label=0, name="y.png")])
    assert [c[2] for c in only_wrong] == [False, False]


KINDS = {"fig3": "cases", "fig4": "reward_schemes", "fig5": "zero_variance"}


@pytest.mark.parametrize("figure", ["fig3", "fig4", "fig5"])
def test_figures_are_written_as_png_pdf_and_csv(figure, image, tmp_path):
    import json

    records = [
        rec(image, s, boxes=GT[:1] if s % 2 else [], name=f"img{i}.png" if figure != "fig3" else None)
        for i in range(2)
        for s in range(6)
    ]
    if figure == "fig3":
        records = [dict(r, image_path=f"{tmp_path}/q{i}.png", sample=0, label=i % 2) for i, r in enumerate(records[:5])]
        for r in records:
            Image.open(image).save(r["image_path"])
    else:
        for r in records:
            if not (tmp_path / r["image_path"]).exists():
                Image.open(image).save(tmp_path / r["image_path"])
            r["image_path"] = str(tmp_path / r["image_path"])
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "figs" / f"{figure}.png"
    settings = FigureSettings(kind=KINDS[figure], title="test", rewards={"alpha": 0.3})
    run_figure([predictions], settings, Outputs(out, out.with_suffix(".pdf"), out.with_suffix(".csv")))
    assert out.read_bytes()[:4] == b"\x89PNG" and out.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(out.with_suffix(".csv"))
    if figure == "fig5":
        assert table["paper_pct"].tolist() == [41.25, 15.25, 11.0] and table["images"].tolist() == [2, 2, 2]
    elif figure == "fig4":
        assert len(table) == 6 and sorted(table["shown"].dropna()) == ["a", "b", "c", "d"]
    else:
        assert len(table) == 4


def test_figure4_weighs_r_count_by_alpha_and_figure5_does_not(image):
    # alpha = 2 ties a right answer one box off (1 + 2 * 0.5) with a wrong one of the right count (0 + 2 * 1)
    records = [rec(image, 0, boxes=[]), rec(image, 1, boxes=GT, answer="no")]
    options = {"alpha": 2.0, "reasoning": "multi_stage"}
    assert scheme_rewards(records, options)["r_cls + r_count"].tolist() == [2.0, 2.0]  # Figure 4: alpha * r_count
    assert scheme_rewards(records, options, count_weight=1.0)["r_cls + r_count"].tolist() == [1.5, 1.0]
    table = zero_variance([r | {"image_path": "x.png"} for r in records], options).set_index("reward")
    assert table.loc["r_cls + r_count", "zero_variance_pct"] == 0.0  # Figure 5: r_count itself, no tie
