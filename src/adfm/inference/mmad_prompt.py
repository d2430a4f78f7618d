"""MMAD's prompt and answer parsing, as MMAD's own evaluation scripts build and read them.

Prompt (MMAD's one-template setting, as its Qwen2.5-VL script builds it): MMAD's instruction (the
model is an industrial inspector who answers with the option's letter), "Answer with the option's
letter from the given choices directly!", "Following is/are N image of normal sample, which can be
used as a template to compare the image being queried.", the templates (random_templates[:N],
N = `templates`), "Following is the query image: ", the query image, "Following is the question
list: ", then the question and its options ("Question: ...", "A. ...", "B. ..."). Each question is
asked on its own; images are given "Picture n:" ids (add_vision_id). Runs of the `reasoning` kind
(trained runs: they were taught to think before answering) get the inspector sentence and the
reasoning instruction instead of the two letter instructions, the rest unchanged.

Answer parsing: `parse` "letter" is MMAD's parse_answer: the last standalone capital A-E in the
reply; if there is none, the option whose text is closest to the reply (difflib, cutoff 0, so any
reply, the empty one included, maps to some option). "answer_tag" reads the letter inside the last
<answer> block first and falls back to MMAD's rule (records say which: `answer_from`). A record that
still has no letter (a question without options) is left out of the scores, as MMAD's summary does
(`unparsed` counts it).
"""

from __future__ import annotations

import re
from difflib import get_close_matches

from adfm.io import InputError
from adfm.protocol import answer_text

INSPECTOR = (
    "\nYou are an industrial inspector who checks products by images. You should judge whether there is a "
    "defect in the query image and answer the questions about it.\n"
)
INSTRUCTION = INSPECTOR + "Answer with the option's letter from the given choices directly.\n"
LETTER_PROMPT = "Answer with the option's letter from the given choices directly! "
_LETTER = re.compile(r"\b([A-E])\b")
_TAGGED_LETTER = re.compile(r"\b([A-Ea-e])\b")


def question_text(question: str, options: dict) -> str:
    return f"Question: {question} \n" + "".join(f"{key}. {value}\n" for key, value in options.items())


def prompt_parts(
    query: str, templates: list[str], question: str, options: dict, reasoning_instruction: str | None = None
) -> list[tuple[str, str]]:
    """MMAD's prompt as (kind, value) parts, templates before the query; with a reasoning
    instruction in place of MMAD's two letter instructions when one is given."""
    if reasoning_instruction:
        parts = [("text", INSPECTOR), ("text", reasoning_instruction)]
    else:
        parts = [("text", INSTRUCTION), ("text", LETTER_PROMPT)]
    if templates:
        parts.append(
            (
                "text",
                (
                    f"Following is/are {len(templates)} image of normal sample, which can be used as a "
                    "template to compare the image being queried."
                ),
            )
        )
        parts.extend(("image", t) for t in templates)
    parts += [
        ("text", "Following is the query image: "),
        ("image", query),
        ("text", "Following is the question list: "),
        ("text", question_text(question, options)),
    ]
    return parts


def parse_choice(response: str, options: dict) -> str | None:
    """MMAD's answer parsing: last standalone A-E, else the closest option text (cutoff 0)."""
    if not isinstance(response, str):
        return None
    letters = _LETTER.findall(response)
    if letters:
        return letters[-1]
    if not options:
        return None
    closest = get_close_matches(response, list(options.values()), n=1, cutoff=0.0)
    if closest:
        return next(key for key, value in options.items() if value == closest[0])
    return None


def parse_reply(response: str, options: dict, mode: str = "letter") -> tuple[str | None, str]:
    """(letter, where it was read): "answer" (inside the last <answer> block, mode "answer_tag")
    or "mmad" (MMAD's parse_answer over the whole reply)."""
    if mode == "answer_tag":
        tagged = answer_text(response) if isinstance(response, str) else None
        letters = _TAGGED_LETTER.findall(tagged or "")
        if letters and letters[0].upper() in options:
            return letters[0].upper(), "answer"
    elif mode != "letter":
        raise InputError(f"unknown MMAD answer parsing {mode!r} (letter or answer_tag)")
    return parse_choice(response, options), "mmad"
