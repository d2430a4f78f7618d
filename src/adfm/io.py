"""Small I/O helpers shared by every stage: atomic outputs, JSON lines, logging."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class InputError(Exception):
    """Bad input from the user (a file, a config value): the CLI prints it without a traceback."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Works for files and directories, so a crashed or killed job never leaves a half-written output
    where Snakemake (or a user) would take it for a finished one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{target}: nothing was written")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv_atomic(frame, path: str | os.PathLike) -> None:
    """A pandas DataFrame as CSV (no index, \\n line ends on every platform), written atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def settings_json(text: str) -> dict:
    """argparse type of every stage's --settings: a JSON object (a bad one is a usage error, not a traceback)."""
    import argparse

    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return settings


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a torn last line (from a killed writer) is dropped, others must parse."""
    records = []
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                logging.getLogger(__name__).warning("%s: dropping torn last line %d", path, number)
                break
            raise InputError(f"{path}: line {number} is not valid JSON ({error})") from None
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def setup_logging(verbose: bool = False) -> None:
    # the processes of one `accelerate launch` (torchrun) job write to the same log: name each line's rank
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = f" [rank {os.environ.get('RANK', '0')}/{world_size}]" if world_size > 1 else ""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s{rank} %(name)s: %(message)s",
        stream=sys.stderr,
    )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_seed(*keys) -> int:
    """A 64-bit seed from the keys' text, the same in every process and Python version (unlike
    hash()): seeded sampling of one dataset or image is independent of every other."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, keys)).encode()).digest()[:8], "little")


def open_rgb(path: str | os.PathLike):
    """An image file as an RGB PIL image, decoded now and the file closed."""
    from PIL import Image  # deferred: most stages that import this module never open an image

    with Image.open(path) as image:
        return image.convert("RGB")
