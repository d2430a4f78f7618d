"""The reasoning protocol: prompts the model gets and the parser for the responses it gives.

Multi-stage responses look like

    <think> ... [{"bbox_2d": [x1, y1, x2, y2], "label": "..."}] ... </think>
    <rethink> ... </rethink>
    <answer> yes | no </answer>

and one-stage responses drop `<rethink>`. Boxes are read from the `<think>` stage only (paper
section 3.3). The parser never raises: whatever the model writes, it returns an answer of "yes",
"no" or None, and a list of boxes (possibly empty).

Answer formats: "letter" (the authors' release: its reward plugin scores <answer>a</answer> as
anomalous and <answer>b</answer> as normal, MMAD's option letters for "Is there any defect in the
object? A. Yes. B. No.") or "yes_no" (ours: <answer>yes</answer> anomalous, <answer>no</answer>
normal). The paper shows no prompt and no answer format. Either way the parsed answer is normalised
to "yes" (anomalous) / "no" (normal), so scoring never sees the format.

Config: `prompts.answer_format` picks the prompt pair `prompts.<format>` (one template per
reasoning mode) and with it the format that training, rewards, the warm start and prediction parse;
`prompt_template` and `prompt_answer_format` are the one place that reads that choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from adfm.io import InputError

REASONING_MODES = ("multi_stage", "one_stage")

# answer format -> {word written in <answer>: normalised answer}; the first word is the anomalous one
ANSWER_WORDS = {"yes_no": {"yes": "yes", "no": "no"}, "letter": {"a": "yes", "b": "no"}}
ANSWER_FORMATS = tuple(ANSWER_WORDS)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_BBOX_2D = re.compile(rf'"?bbox_2d"?\s*:\s*\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]')
_BARE_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_STAGES = {
    "multi_stage": r"^\s*<think>(?:(?!</?think>).)+</think>\s*<rethink>(?:(?!</?rethink>).)+</rethink>\s*",
    "one_stage": r"^\s*<think>(?:(?!</?think>).)+</think>\s*",
}
_STRUCTURE = {
    (reasoning, answer_format): re.compile(
        stages + r"<answer>\s*(?:" + "|".join(ANSWER_WORDS[answer_format]) + r")\s*\.?\s*</answer>\s*$",
        re.DOTALL | re.IGNORECASE,
    )
    for reasoning, stages in _STAGES.items()
    for answer_format in ANSWER_FORMATS
}


def prompt_answer_format(prompts: dict) -> str:
    """The answer format of the configured prompt pair (config `prompts.answer_format`)."""
    answer_format = prompts.get("answer_format")
    if answer_format not in ANSWER_WORDS:
        raise InputError(f"prompts.answer_format: {answer_format!r}, expected one of {', '.join(ANSWER_FORMATS)}")
    return answer_format


def prompt_template(prompts: dict, reasoning: str) -> str:
    """The template of a reasoning mode in the configured prompt pair (config `prompts`)."""
    answer_format = prompt_answer_format(prompts)
    try:
        return prompts[answer_format][reasoning]
    except KeyError:
        raise InputError(f"prompts.{answer_format}.{reasoning}: no such prompt template") from None


@dataclass(frozen=True)
class ParsedResponse:
    answer: str | None  # "yes" (anomalous), "no" (normal), or None when no answer can be read
    boxes: list[list[float]] = field(default_factory=list)  # from <think>, as written (not clipped)
    well_formed: bool = False  # the structure of the requested reasoning mode is respected


def build_prompt(template: str) -> list[dict]:
    """Conversational prompt with two images: the normal reference first, then the query."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": template}]}]


def completion_text(completion) -> str:
    """Text of a completion as TRL passes it: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content blocks
            return "".join(block.get("text", "") for block in content if isinstance(block, dict))
        return content if isinstance(content, str) else ""
    return ""


def answer_text(text: str) -> str | None:
    """The raw text inside the last <answer> block (None when there is none)."""
    answers = _ANSWER.findall(text) if isinstance(text, str) else []
    return answers[-1] if answers else None


def first_block(text: str, tag: str, *, any_case: bool = False) -> str | None:
    """The text inside the first <tag>...</tag> block, as written (None when there is none);
    `any_case` also reads <THINK> and the like (the release's graded format reward does)."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | (re.IGNORECASE if any_case else 0))
    return match.group(1) if match else None


def expected_answer(label: int) -> str:
    """The normalised answer ("yes" anomalous, "no" normal) a correct response to a label parses to."""
    return "yes" if int(label) == 1 else "no"


def answer_word(label: int, answer_format: str = "yes_no") -> str:
    """The word a correct response writes in <answer> for a label (1 anomalous, 0 normal)."""
    anomalous, normal = ANSWER_WORDS[answer_format]
    return anomalous if int(label) == 1 else normal


def parse_answer(text: str, answer_format: str = "yes_no") -> str | None:
    """The final decision inside the last <answer> block, normalised to "yes" / "no" / None.

    The first word of the block decides ("Yes." and "yes, a scratch" are "yes"); with the letter
    format "a" is "yes" (anomalous) and "b" is "no" (normal).
    """
    answer = answer_text(text)
    if answer is None:
        return None
    word = re.sub(r"[^a-z]", " ", answer.lower()).split()
    if not word:
        return None
    return ANSWER_WORDS.get(answer_format, ANSWER_WORDS["yes_no"]).get(word[0])


def has_box(text: str) -> bool:
    """Whether the text holds a bare [x1, y1, x2, y2] list of numbers (the box list parse_boxes falls back to)."""
    return _BARE_BOX.search(text) is not None


def parse_boxes(text: str) -> list[list[float]]:
    """Boxes written in the first <think> block: `bbox_2d` entries, else bare 4-number lists."""
    body = first_block(text, "think")
    if body is None:
        return []
    matches = _BBOX_2D.findall(body) or _BARE_BOX.findall(body)
    return [[float(v) for v in match] for match in matches]


def parse_response(text, reasoning: str = "multi_stage", answer_format: str = "yes_no") -> ParsedResponse:
    if not isinstance(text, str):
        return ParsedResponse(answer=None)
    if answer_format not in ANSWER_WORDS:
        answer_format = "yes_no"
    structure = _STRUCTURE.get((reasoning, answer_format), _STRUCTURE[("multi_stage", answer_format)])
    return ParsedResponse(
        answer=parse_answer(text, answer_format), boxes=parse_boxes(text), well_formed=structure.match(text) is not None
    )


def format_response(
    boxes: list[list[float]], answer: str, *, reasoning: str = "multi_stage", think: str = "", rethink: str = ""
) -> str:
    """A well-formed response (for warm-start targets, tests and figures)."""
    regions = ", ".join(
        '{"bbox_2d": [' + ", ".join(str(round(v)) for v in box) + '], "label": "defect"}' for box in boxes
    )
    think_text = (think + " " if think else "") + f"[{regions}]"
    parts = [f"<think>{think_text}</think>"]
    if reasoning == "multi_stage":
        parts.append(f"<rethink>{rethink or 'checked each region'}</rethink>")
    parts.append(f"<answer>{answer}</answer>")
    return "".join(parts)
