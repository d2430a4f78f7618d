"""Random and mutated model responses for fuzzing the parser and the rewards (seeded).

Shared by tests/reliability/test_fuzz_responses.py (a 10k slice) and bench/fuzz_responses.py (100k).
"""

from __future__ import annotations

import random

WELL_FORMED = (
    '<think>scan [{"bbox_2d": [12, 30, 80, 95], "label": "scratch"}, {"bbox_2d": [100, 5, 140, 60]}]</think>'
    "<rethink>region 1 is a real scratch; region 2 is glare</rethink><answer>yes</answer>"
)
PIECES = [
    "<think>",
    "</think>",
    "<rethink>",
    "</rethink>",
    "<answer>",
    "</answer>",
    "yes",
    "no",
    "Yes.",
    "NO",
    "maybe",
    '{"bbox_2d": [',
    "]",
    "[",
    "}",
    "{",
    ",",
    '"label": "dent"',
    "bbox_2d",
    ":",
    " ",
    "\n",
    "\t",
    "1e308",
    "1e999",
    "-1e999",
    "NaN",
    "nan",
    "inf",
    "-0",
    "0.5",
    "-17",
    "99999999999999999999999",
    "3.",
    ".5",
    "1e-320",
    "０１２",
    "é",
    "缺陷",
    "🙂",
    "\u202e",
    "\x00",
    "\\",
    '"',
    "'",
    "<think><think>",
    "</answer></answer>",
]


def numbers(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.6:
        return str(rng.randint(-50, 600))
    if choice < 0.8:
        return repr(rng.uniform(-1e6, 1e6))
    return rng.choice(["1e999", "-1e999", "1e308", "0", "-0.0", "3.5e2", "12345678901234567890"])


def random_box_response(rng: random.Random) -> str:
    boxes = ", ".join(
        '{{"bbox_2d": [{}]}}'.format(", ".join(numbers(rng) for _ in range(rng.choice([4, 4, 4, 3, 5]))))
        for _ in range(rng.randint(0, 4))
    )
    rethink = "<rethink>look closer</rethink>" if rng.random() < 0.7 else ""
    return f"<think>[{boxes}]</think>{rethink}<answer>{rng.choice(['yes', 'no', 'unsure', ''])}</answer>"


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        position = rng.randint(0, len(text))
        if kind < 0.3:  # truncate
            text = text[:position]
        elif kind < 0.6:  # insert a piece
            text = text[:position] + rng.choice(PIECES) + text[position:]
        elif kind < 0.8:  # delete a span
            text = text[:position] + text[position + rng.randint(1, 20) :]
        else:  # duplicate a span (nesting, repeated tags)
            span = text[position : position + rng.randint(1, 40)]
            text = text[:position] + span + span + text[position:]
    return text


def responses(count: int, seed: int = 0):
    """`count` responses: random piece soup, random box responses, and mutations of both."""
    rng = random.Random(seed)
    for index in range(count):
        kind = index % 4
        if kind == 0:
            yield "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
        elif kind == 1:
            yield random_box_response(rng)
        elif kind == 2:
            yield mutate(WELL_FORMED, rng)
        else:
            yield mutate(random_box_response(rng), rng)
