import pytest

from adfm.io import InputError
from adfm.protocol import build_prompt, completion_text, format_response, parse_response
from adfm.settings.model import TrainSettings, WarmStartSettings

GOOD = (
    '<think>scan: [{"bbox_2d": [10, 12, 50, 60], "label": "scratch"}, {"bbox_2d": [70, 70, 90, 95]}]</think>'
    "<rethink>region 1 is a scratch</rethink><answer> Yes. </answer>"
)


def test_multi_stage_response_parses():
    parsed = parse_response(GOOD)
    assert parsed.answer == "yes"
    assert parsed.boxes == [[10.0, 12.0, 50.0, 60.0], [70.0, 70.0, 90.0, 95.0]]
    assert parsed.well_formed


def test_one_stage_structure_is_not_multi_stage():
    text = '<think>[{"bbox_2d": [1, 2, 3, 4]}]</think><answer>no</answer>'
    assert parse_response(text, "one_stage").well_formed
    assert not parse_response(text, "multi_stage").well_formed
    assert parse_response(text).answer == "no"


def test_boxes_only_from_think_stage():
    text = '<think>nothing</think><rethink>[{"bbox_2d": [1, 2, 3, 4]}]</rethink><answer>no</answer>'
    assert parse_response(text).boxes == []


def test_bare_lists_are_read_when_no_bbox_key():
    assert parse_response("<think>region [1.5, 2, 30, 4e1]</think>").boxes == [[1.5, 2.0, 30.0, 40.0]]


def test_malformed_text_gives_no_answer_and_no_boxes():
    for text in ["", "yes", "<answer>maybe</answer>", "<think>[1, 2, 3]", None, 42, "<answer></answer>"]:
        parsed = parse_response(text)
        assert parsed.answer is None
        assert parsed.boxes == []
        assert not parsed.well_formed


def test_last_answer_wins():
    assert parse_response("<answer>no</answer> wait <answer>yes</answer>").answer == "yes"


def test_nested_tags_are_not_well_formed():
    text = "<think><think>x</think></think><rethink>y</rethink><answer>yes</answer>"
    assert not parse_response(text).well_formed


def test_format_response_round_trips():
    text = format_response([[1, 2, 30, 40]], "yes")
    parsed = parse_response(text)
    assert (parsed.answer, parsed.boxes, parsed.well_formed) == ("yes", [[1.0, 2.0, 30.0, 40.0]], True)
    one = format_response([], "no", reasoning="one_stage")
    assert parse_response(one, "one_stage").well_formed and "<rethink>" not in one


def test_prompt_has_reference_then_query_then_text():
    content = build_prompt("inspect")[0]["content"]
    assert [block["type"] for block in content] == ["image", "image", "text"]
    assert content[2]["text"] == "inspect"


def test_completion_text_accepts_trl_forms():
    assert completion_text("a") == "a"
    assert completion_text([{"role": "assistant", "content": "b"}]) == "b"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "c"}]}]) == "c"
    assert completion_text(None) == ""


def test_letter_answers_normalise_to_yes_no():
    text = '<think>[{"bbox_2d": [1, 2, 3, 4]}]</think><rethink>real</rethink><answer>a</answer>'
    parsed = parse_response(text, answer_format="letter")
    assert (parsed.answer, parsed.well_formed) == ("yes", True)
    assert parse_response(text.replace(">a<", ">B.<"), answer_format="letter").answer == "no"
    # yes / no responses are malformed in the letter format, and letters in the yes / no format
    assert parse_response(format_response([], "no"), answer_format="letter").answer is None
    assert not parse_response(text).well_formed and parse_response(text).answer is None
    assert parse_response("<answer>c</answer>", answer_format="letter").answer is None


# ---- the prompt switch (config prompts.answer_format), end to end: prompt, parsing, r_cls, prediction, scoring


@pytest.mark.parametrize("answer_format", ["letter", "yes_no"])
def test_prompt_switch_end_to_end(answer_format):
    import json
    from types import SimpleNamespace

    from conftest import REPO

    from adfm import config as adfm_config
    from adfm.evaluation.score import accuracy_table
    from adfm.inference.records import response_record
    from adfm.protocol import answer_word
    from adfm.rewards import make_reward_funcs
    from adfm.settings.inference import PredictSettings

    config = adfm_config.load_config([REPO / "config.yaml"])
    config["prompts"]["answer_format"] = answer_format
    assert adfm_config.config_problems(config) == []
    train = json.loads(TrainSettings.from_config(config, "adfm").to_json())
    predict = PredictSettings.from_config(config, "adfm").to_dict()
    warm = json.loads(WarmStartSettings.from_config(config, "multidomain", "multi_stage").to_json())
    # the prompt of the chosen pair, everywhere
    assert train["prompt"] == predict["prompt"] == warm["prompt"] == config["prompts"][answer_format]["multi_stage"]
    asks = {"letter": "write only the letter of the correct option: a or b", "yes_no": "answer yes if"}
    assert asks[answer_format] in train["prompt"]
    assert predict["answer_format"] == warm["answer_format"] == answer_format

    # a right and a wrong response in this format; the other format's words are not answers
    other = "yes_no" if answer_format == "letter" else "letter"
    right, wrong = (format_response([[10, 10, 40, 40]], answer_word(label, answer_format)) for label in (1, 0))
    foreign = format_response([[10, 10, 40, 40]], answer_word(1, other))
    cls, fmt = make_reward_funcs(["cls", "format"], train["reward_options"])
    completions = [[{"role": "assistant", "content": t}] for t in (right, wrong, foreign)]
    assert cls(completions, label=[1, 1, 1]) == [1.0, 0.0, 0.0]
    assert fmt(completions) == [1.0, 1.0, 0.0]

    row = SimpleNamespace(category="bottle", image_path="q.png", reference_path="r.png", label=1)
    records = [
        response_record(
            row, "adfm", "mvtec_ad", 0, text, predict["reasoning"], lambda r: ([], (100, 100)), predict["answer_format"]
        )
        for text in (right, wrong, foreign)
    ]
    assert [r["answer"] for r in records] == ["yes", "no", None]
    for i, record in enumerate(records):
        record["image_path"] = f"q{i}.png"
    table = accuracy_table(records)
    overall = table[table["category"] == "all"].iloc[0]
    assert (overall["n"], overall["correct"], overall["answered"]) == (3, 1, 2)


def test_prompt_pair_lookup_errors_name_the_key():
    from adfm.protocol import prompt_template

    with pytest.raises(InputError, match="prompts.answer_format"):
        prompt_template({"answer_format": "emoji"}, "multi_stage")
    with pytest.raises(InputError, match="prompts.letter.multi_stage"):
        prompt_template({"answer_format": "letter", "letter": {}}, "multi_stage")
