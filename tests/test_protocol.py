from adfm.protocol import build_prompt, completion_text, format_response, parse_response

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
