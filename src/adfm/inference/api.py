"""Predictions of a chat model behind an OpenAI-compatible API (GPT-4o, GPT-4.1, Gemini's endpoint...).

    adfm predict-api --split SPLIT.csv --dataset NAME --run-name NAME --settings JSON --out PRED.jsonl

Each selected split row (role == "test" of dataset NAME) becomes one chat request: the normal
reference image, the query image (both as base64 data URLs, downscaled so that the longer side is
at most `max_image_side`) and the prompt template of the run's reasoning mode; the response is
parsed like the Hugging Face backend's (adfm.protocol.parse_response) and written as the same
record (adfm.inference.hf.PredictionWriter: appended, resumable, keyed by model, dataset, image,
sample). Boxes and ground truth are in the frame of the image as sent.

The API key is read from the environment variable named by `key_env` (never from the config or
the command line) and sent only in the Authorization header: it is not logged, not written to the
output, and removed from any error message. Requests run `concurrency` at a time; a failed request
(connection error, timeout, HTTP 429 or 5xx) is retried `max_retries` times with exponential
backoff (`backoff_s` x 2^attempt, at most 60 s); other HTTP errors stop the job.

Settings JSON: {"prompt", "reasoning", "api": {"base_url", "model", "key_env", "concurrency",
"max_retries", "backoff_s", "timeout_s", "max_image_side", "max_tokens", "temperature"}}.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from adfm.io import InputError, settings_json
from adfm.inference.hf import Part

log = logging.getLogger(__name__)

DEFAULTS = {
    "concurrency": 4,
    "max_retries": 5,
    "backoff_s": 1.0,
    "timeout_s": 120.0,
    "max_image_side": 512,
    "max_tokens": 1024,
    "temperature": 0.0,
}
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 60.0


class APIError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


def api_key(key_env: str) -> str:
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise InputError(f"environment variable {key_env} is not set: no API key for the API backend")
    return key


def key_available(key_env: str) -> bool:
    return bool(os.environ.get(key_env, "").strip())


def encode_image(path: str, max_side: int) -> tuple[str, tuple[int, int]]:
    """Data URL of the image (PNG, downscaled to max_side) and the size of the image sent (W, H)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BICUBIC)
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
    sx, sy = frame[0] / width, frame[1] / height
    return [[round(b[0] * sx, 2), round(b[1] * sy, 2), round(b[2] * sx, 2), round(b[3] * sy, 2)] for b in boxes], frame


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

    def __init__(self, base_url: str, model: str, key_env: str, *, max_retries: int = 5, backoff_s: float = 1.0,
                 timeout_s: float = 120.0, sleep=time.sleep):
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
        body = {"model": self.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if n > 1:
            body["n"] = int(n)
        data = json.dumps(body).encode()
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                log.warning("request failed (%s); retry %d of %d in %.1f s", last_error, attempt, self.max_retries,
                            delay)
                self._sleep(delay)
            request = urllib.request.Request(self.url, data=data, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
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


def client_from_settings(api: dict, **kwargs) -> ChatClient:
    merged = {**DEFAULTS, **api}
    return ChatClient(merged["base_url"], merged["model"], merged["key_env"], max_retries=merged["max_retries"],
                      backoff_s=merged["backoff_s"], timeout_s=merged["timeout_s"], **kwargs)


def run_requests(client: ChatClient, jobs: list, make_content, on_result, *, concurrency: int, max_tokens: int,
                 temperature: float, n: int = 1) -> None:
    """Send one request per job, `concurrency` at a time; `on_result(job, texts)` in the calling thread.

    A job that fails for good stops the run after the requests under way finish; what was
    written stays written (the next run resumes).
    """
    lock = threading.Lock()

    def call(job):
        return job, client.complete(make_content(job), max_tokens=max_tokens, temperature=temperature, n=n)

    failure = None
    with ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
        futures = [pool.submit(call, job) for job in jobs]
        for future in as_completed(futures):
            try:
                job, texts = future.result()
            except APIError as error:
                failure = failure or error
                for other in futures:
                    other.cancel()
                continue
            with lock:
                on_result(job, texts)
    if failure is not None:
        raise InputError(str(failure))


def predict_api(split_csv, dataset: str, run_name: str, settings: dict, out, *, sleep=time.sleep):
    from adfm.inference.hf import PredictionWriter, response_record, select_rows

    if "prompt" not in settings or "api" not in settings:
        raise InputError("predict-api settings: need prompt and api")
    api = {**DEFAULTS, **settings["api"]}
    reasoning = settings.get("reasoning", "multi_stage")
    rows = select_rows(split_csv, dataset, settings)
    writer = PredictionWriter(out)
    todo = [row for row in rows.itertuples(index=False) if (run_name, dataset, str(row.image_path), 0) not in writer.done]
    log.info("%s (%s at %s) on %s: %d images, %d to go", run_name, api["model"], api["base_url"], dataset, len(rows),
             len(todo))
    if todo:
        client = client_from_settings(api, sleep=sleep)
        max_side = int(api["max_image_side"])

        def content(row):
            return openai_content([("image", str(row.reference_path)), ("image", str(row.image_path)),
                                   ("text", settings["prompt"])], max_side)

        def frame_of_row(row):
            return sent_frame(row.boxes, int(row.width), int(row.height), max_side)

        def record(row, texts):
            writer.write([response_record(row, run_name, dataset, 0, texts[0], reasoning, frame_of_row,
                                          settings.get("answer_format", "yes_no"))])

        with writer:
            run_requests(client, todo, content, record, concurrency=api["concurrency"], max_tokens=api["max_tokens"],
                         temperature=api["temperature"])
    return writer.finish()


def _main(args: argparse.Namespace) -> None:
    predict_api(args.split, args.dataset, args.run_name, args.settings, args.out)


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict-api", help="responses of a chat model behind an OpenAI-compatible API",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument("--dataset", required=True, help="dataset name (test rows of this dataset are predicted)")
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=settings_json,
                        help='JSON: {"prompt", "reasoning", "api": {base_url, model, key_env, concurrency, '
                        'max_retries, backoff_s, timeout_s, max_image_side, max_tokens}}')
    parser.add_argument("--out", required=True, help="predictions JSONL")
    parser.set_defaults(func=_main)
