"""Predictions of a chat model behind an OpenAI-compatible API (GPT-4o, GPT-4.1, Gemini's endpoint...).

    adfm predict-api --split SPLIT.csv --dataset NAME [NAME ...] --run-name NAME --settings JSON
                     --out PRED.jsonl [PRED.jsonl ...]

Each selected split row (role == "test" of dataset NAME) becomes one chat request: the normal
reference image, the query image (both as base64 data URLs, downscaled so that the longer side is
at most `max_image_side`) and the prompt template of the run's reasoning mode; the response is
parsed like the Hugging Face backend's (adfm.protocol.parse_response) and written as the same
record (adfm.inference.records.PredictionWriter: appended, resumable, keyed by model, dataset,
image, sample). Boxes and ground truth are in the frame of the image as sent.

The API key is read from the environment variable named by `key_env` (never from the config or
the command line) and sent only in the Authorization header: it is not logged, not written to the
output, and removed from any error message. Requests run `concurrency` at a time; a failed request
(connection error, timeout, HTTP 429 or 5xx) is retried `max_retries` times with exponential
backoff (`backoff_s` x 2^attempt, at most 60 s); other HTTP errors stop the job.

`ApiBackend` is the chat API's side of the backend seam every prediction stage uses
(adfm.inference.backend); MMAD's questions go through it too.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from adfm.boxes import scale_boxes
from adfm.inference.backend import OnAnswers, Part, PromptOf
from adfm.inference.records import (
    PredictionWriter,
    each_dataset,
    key,
    pair_prompt,
    paired,
    response_record,
    select_rows,
)
from adfm.io import InputError
from adfm.settings.inference import ApiOptions, ApiSettings

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 60.0


class APIError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


def api_key(key_env: str) -> str:
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise InputError(f"environment variable {key_env} is not set: no API key for the API backend")
    return key


def encode_image(path: str, max_side: int) -> tuple[str, tuple[int, int]]:
    """Data URL of the image (PNG, downscaled to max_side) and the size of the image sent (W, H)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC
            )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        size = image.size
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), size


def sent_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size of an image as `encode_image` sends it."""
    scale = min(1.0, max_side / max(width, height))
    return (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1.0 else (width, height)


def sent_frame(boxes, width: int, height: int, max_side: int) -> tuple[list[list[float]], tuple[int, int]]:
    """Ground-truth boxes (original pixels) in the frame of the image as sent, and that frame."""
    frame = sent_size(width, height, max_side)
    return scale_boxes(boxes, (width, height), frame, ndigits=2), frame


def openai_content(parts: Sequence[Part], max_side: int) -> list[dict]:
    content = []
    for kind, value in parts:
        if kind == "image":
            url, _ = encode_image(value, max_side)
            content.append({"type": "image_url", "image_url": {"url": url}})
        else:
            content.append({"type": "text", "text": value})
    return content


class ChatClient:
    """Minimal client of POST {base_url}/chat/completions (urllib; no third-party dependency)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        key_env: str,
        *,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 120.0,
        sleep=time.sleep,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._key = api_key(key_env)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self._sleep = sleep

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def complete(self, content: list[dict], *, max_tokens: int, temperature: float, n: int = 1) -> list[str]:
        """The text of the n choices for one user message."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
        }
        if n > 1:
            body["n"] = int(n)
        data = json.dumps(body).encode()
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                log.warning(
                    "request failed (%s); retry %d of %d in %.1f s", last_error, attempt, self.max_retries, delay
                )
                self._sleep(delay)
            request = urllib.request.Request(
                self.url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                detail = self._redact(error.read().decode("utf-8", "replace")[:300])
                last_error = f"HTTP {error.code}: {detail}"
                if error.code in RETRY_STATUS:
                    continue
                raise APIError(f"{self.url}: {last_error}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as error:
                last_error = self._redact(f"{type(error).__name__}: {error}")
                continue
            choices = payload.get("choices") or []
            if not choices:
                last_error = "response without choices"
                continue
            return [str((choice.get("message") or {}).get("content") or "") for choice in choices]
        raise APIError(f"{self.url}: giving up after {self.max_retries + 1} attempts ({last_error})")


class ApiBackend:
    """Prompts -> responses through the chat API, `concurrency` requests at a time.

    A job that fails for good stops the run after the requests under way finish; what was written
    stays written (the next run resumes).
    """

    def __init__(self, api: ApiOptions, *, max_tokens: int, temperature: float, sleep=time.sleep):
        self.client = ChatClient(
            api.base_url,
            api.model,
            api.key_env,
            max_retries=api.max_retries,
            backoff_s=api.backoff_s,
            timeout_s=api.timeout_s,
            sleep=sleep,
        )
        self.concurrency, self.max_side = api.concurrency, api.max_image_side
        self.max_tokens, self.temperature = max_tokens, temperature

    def answer(self, jobs: list, prompt_of: PromptOf, on_answers: OnAnswers) -> None:
        """`on_answers([(job, texts)])` in the calling thread, as each request completes."""

        def call(job):
            content = openai_content(prompt_of(job), self.max_side)
            return job, self.client.complete(content, max_tokens=self.max_tokens, temperature=self.temperature)

        failure = None
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            futures = [pool.submit(call, job) for job in jobs]
            for future in as_completed(futures):
                try:
                    answered = future.result()
                except APIError as error:
                    failure = failure or error
                    for other in futures:
                        other.cancel()
                    continue
                on_answers([answered])
        if failure is not None:
            raise InputError(str(failure))


def predict_api(
    split_csv, dataset: str, run_name: str, settings: ApiSettings, out, *, sleep=time.sleep, keep_partial=False
):
    api = settings.api
    rows = select_rows(split_csv, dataset, settings.role)
    writer = PredictionWriter(out, keep_partial)
    todo = writer.pending(rows.itertuples(index=False), lambda row: [key(run_name, dataset, row.image_path)])
    log.info(
        "%s (%s at %s) on %s: %d images, %d to go", run_name, api.model, api.base_url, dataset, len(rows), len(todo)
    )
    if not todo:
        return writer.finish()
    backend = ApiBackend(api, max_tokens=api.max_tokens, temperature=api.temperature, sleep=sleep)

    def frame_of_row(row):
        return sent_frame(row.boxes, int(row.width), int(row.height), api.max_image_side)

    def record(answers):
        writer.write(
            [
                response_record(
                    row, run_name, dataset, 0, texts[0], settings.reasoning, frame_of_row, settings.answer_format
                )
                for row, texts in answers
            ]
        )

    with writer:
        backend.answer(todo, lambda row: pair_prompt(row, settings.prompt), record)
    return writer.finish()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict-api",
        help="responses of a chat model behind an OpenAI-compatible API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument(
        "--dataset", required=True, nargs="+", help="dataset names (test rows of each are predicted, into its --out)"
    )
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=ApiSettings.argument, help=ApiSettings.describe())
    parser.add_argument(
        "--out", required=True, nargs="+", help="predictions JSONL, one per --dataset in the same order"
    )
    # nothing to load: the one client per dataset costs a key lookup
    parser.set_defaults(
        func=lambda a: each_dataset(
            paired(parser, a.dataset, a.out),
            lambda dataset, out, keep: predict_api(a.split, dataset, a.run_name, a.settings, out, keep_partial=keep),
        )
    )
