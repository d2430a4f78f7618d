"""The reasoning protocol: prompts the model gets and the parser for the responses it gives.

Multi-stage responses look like

    <think> ... [{"bbox_2d": [x1, y1, x2, y2], "label": "..."}] ... </think>
    <rethink> ... </rethink>
    <answer> yes | no </answer>

and one-stage responses drop `<rethink>`. Boxes are read from the `<think>` stage only (paper
section 3.3). The parser never raises: whatever the model writes, it returns an answer of "yes",
"no" or None, and a list of boxes (possibly empty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REASONING_MODES = ("multi_stage", "one_stage")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_BBOX_2D = re.compile(rf'"?bbox_2d"?\s*:\s*\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]')
_BARE_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_STRUCTURE = {
    "multi_stage": re.compile(
        r"^\s*<think>(?:(?!</?think>).)+</think>\s*<rethink>(?:(?!</?rethink>).)+</rethink>\s*"
        r"<answer>\s*(?:yes|no)\s*\.?\s*</answer>\s*$",
        re.DOTALL | re.IGNORECASE,
    ),
    "one_stage": re.compile(
        r"^\s*<think>(?:(?!</?think>).)+</think>\s*<answer>\s*(?:yes|no)\s*\.?\s*</answer>\s*$",
        re.DOTALL | re.IGNORECASE,
    ),
}


@dataclass(frozen=True)
class ParsedResponse:
    answer: str | None  # "yes" (anomalous), "no" (normal), or None when no answer can be read
    boxes: list[list[float]] = field(default_factory=list)  # from <think>, as written (not clipped)
    well_formed: bool = False  # the structure of the requested reasoning mode is respected


def build_prompt(template: str) -> list[dict]:
    """Conversational prompt with two images: the normal reference first, then the query."""
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": template}],
        }
    ]


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


def parse_answer(text: str) -> str | None:
    """The final decision inside the last <answer> block, normalised to "yes" / "no" / None."""
    answers = _ANSWER.findall(text)
    if not answers:
        return None
    word = re.sub(r"[^a-z]", " ", answers[-1].lower()).split()
    if not word:
        return None
    return word[0] if word[0] in ("yes", "no") else None


def parse_boxes(text: str) -> list[list[float]]:
    """Boxes written in the first <think> block: `bbox_2d` entries, else bare 4-number lists."""
    think = _THINK.search(text)
    if think is None:
        return []
    body = think.group(1)
    matches = _BBOX_2D.findall(body) or _BARE_BOX.findall(body)
    return [[float(v) for v in match] for match in matches]


def parse_response(text, reasoning: str = "multi_stage") -> ParsedResponse:
    if not isinstance(text, str):
        return ParsedResponse(answer=None)
    structure = _STRUCTURE.get(reasoning, _STRUCTURE["multi_stage"])
    return ParsedResponse(
        answer=parse_answer(text),
        boxes=parse_boxes(text),
        well_formed=structure.match(text) is not None,
    )


def format_response(
    boxes: list[list[float]], answer: str, *, reasoning: str = "multi_stage", think: str = "", rethink: str = ""
) -> str:
    """A well-formed response (for warm-start targets, tests and figures)."""
    regions = ", ".join(
        '{"bbox_2d": [%s], "label": "defect"}' % ", ".join(str(int(round(v))) for v in box) for box in boxes
    )
    think_text = (think + " " if think else "") + f"[{regions}]"
    parts = [f"<think>{think_text}</think>"]
    if reasoning == "multi_stage":
        parts.append(f"<rethink>{rethink or 'checked each region'}</rethink>")
    parts.append(f"<answer>{answer}</answer>")
    return "".join(parts)
