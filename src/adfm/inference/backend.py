"""The backend seam: every prediction stage hands its jobs and their prompts to a `Backend` and gets
response texts back, whatever answers them (adfm.inference.generate.HFBackend: a Hugging Face model;
adfm.inference.api.ApiBackend: a chat model behind an API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# A prompt as a sequence of parts, in order: ("image", path) or ("text", text).
Part = tuple[str, str]
PromptOf = Callable[[object], Sequence[Part]]  # a job -> its prompt
OnAnswers = Callable[[list[tuple[object, list[str]]]], None]  # called with [(job, response texts), ...]


class Backend(Protocol):
    def answer(self, jobs: list, prompt_of: PromptOf, on_answers: OnAnswers) -> None:
        """Ask every job's prompt; `on_answers` with the jobs answered so far, in the calling thread."""
