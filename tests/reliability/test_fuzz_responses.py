"""100,000 random and mutated responses through the parser and every reward (bench/fuzz_responses.py
runs any count with any seed): nothing raises, answers are yes / no / None, boxes are well formed and inside the
frame, rewards are finite."""

import math

import pytest
from conftest import count_cases

from adfm.protocol import parse_response
from adfm.rewards import REWARDS, make_reward_funcs, predicted_boxes

from .fuzzer import responses

COUNT = 100_000
FRAME = (224, 168)


def check(texts: list[str]) -> None:
    labels = [i % 2 for i in range(len(texts))]
    truth = [[[10.0, 20.0, 90.0, 100.0]] if label else [] for label in labels]
    for text in texts:
        for reasoning in ("multi_stage", "one_stage"):
            parsed = parse_response(text, reasoning)
            assert parsed.answer in ("yes", "no", None)
            answer, boxes = predicted_boxes(text, FRAME, reasoning)
            assert answer == parsed.answer
            for x1, y1, x2, y2 in boxes:
                assert all(math.isfinite(v) for v in (x1, y1, x2, y2))
                assert 0 <= x1 < x2 <= FRAME[0] and 0 <= y1 < y2 <= FRAME[1]
    completions = [[{"role": "assistant", "content": text}] for text in texts]
    for reward in make_reward_funcs(list(REWARDS)):
        values = reward(completions, label=labels, boxes=truth, frame=[list(FRAME)] * len(texts))
        assert len(values) == len(texts)
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), reward.__name__


@pytest.mark.slow
def test_fuzzed_responses_never_break_the_parser_or_rewards():
    texts = list(responses(COUNT, seed=1))
    for start in range(0, COUNT, 1000):
        check(texts[start : start + 1000])
    count_cases(f"fuzzed responses through the parser (2 reasoning modes) and {len(REWARDS)} rewards", COUNT)
