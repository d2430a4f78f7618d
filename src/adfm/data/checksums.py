"""Checksums of downloads: the expected sha256 from a `sha256sum` file, the check of a file against
it, and the lock file that records, at the first clean download, the sha256 of an archive with no
published one (see adfm.data.download)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from pathlib import Path

from adfm.io import InputError, atomic_path, sha256_file

log = logging.getLogger(__name__)


def read_checksum_file(path: Path) -> str:
    """The sha256 in a `sha256sum`-style file (`<hex>  <name>`, or the hex alone)."""
    try:
        words = Path(path).read_text().split()
    except OSError as error:
        raise InputError(f"{path}: cannot read checksum file ({error.strerror})") from None
    if not words or len(words[0]) != 64 or any(c not in "0123456789abcdef" for c in words[0].lower()):
        raise InputError(f"{path}: expected a sha256 (64 hex digits) as the first word")
    return words[0].lower()


def verify(path: Path, expected: str | None) -> str:
    """The file's sha256, checked against `expected` when one is given."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise InputError(f"{path}: sha256 mismatch: expected {expected}, got {actual}")
    return actual


@contextlib.contextmanager
def _locked(lock_file: Path):
    """The lock file's entries, held under an exclusive lock and written back atomically."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file.with_name(lock_file.name + ".flock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # parallel download jobs share one lock file
        try:
            entries = json.loads(lock_file.read_text()) if lock_file.exists() else {}
        except json.JSONDecodeError as error:
            raise InputError(f"{lock_file}: not valid JSON ({error})") from None
        before = dict(entries)
        yield entries
        if entries != before:
            with atomic_path(lock_file) as tmp:
                tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def check_lock(path: Path, url: str, digest: str, lock_file: Path) -> None:
    """Check `path` (whose sha256 is `digest`) against the sha256 recorded for `url`, if any."""
    with _locked(lock_file) as entries:
        recorded = entries.get(url)
    if recorded is None:
        log.warning(
            "%s: no published checksum and none recorded yet; it will be recorded in %s once the "
            "archive has extracted cleanly",
            path,
            lock_file,
        )
    elif recorded != digest:
        raise InputError(
            f"{path}: sha256 mismatch: {lock_file} recorded {recorded} for {url} at its first "
            f"download, got {digest}. If the archive was replaced on purpose, delete the {url!r} "
            f"entry from {lock_file} and rerun."
        )


def record_lock(digests: dict[str, str], lock_file: Path) -> None:
    """Record {url: sha256} of archives that extracted cleanly, where none is recorded yet."""
    with _locked(lock_file) as entries:
        for url, digest in digests.items():
            if url not in entries:
                entries[url] = digest
                log.info("%s: no published checksum; recorded sha256 %s in %s", url, digest, lock_file)
