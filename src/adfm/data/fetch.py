"""Fetch an archive: a local file as it is (a manual download), a remote one into a cache, checked
against its sha256 either way.

Remote archives stream to `<cache>/<name>.part` (resumed with an HTTP Range request after an
interruption) and are renamed into place only once the checksum matches.
"""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from adfm.data.checksums import verify
from adfm.io import InputError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def local_path(url: str) -> Path | None:
    """The local file a `file:` URL (or a bare path) names; None for remote URLs.

    Accepts `file:///abs/path`, `file:relative/path` and plain paths, so that a config can point at
    an archive downloaded by hand, relative to the working directory.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.netloc + parsed.path))
    if parsed.scheme:
        raise InputError(f"unsupported URL scheme {parsed.scheme!r} in {url!r}")
    return Path(url)


def fetch(url: str, cache_dir: Path, expected_sha256: str | None) -> tuple[Path, str]:
    """The verified archive for `url` (the local file itself, or a cached download of it) and its sha256."""
    source = local_path(url)
    if source is not None:
        if not source.is_file():
            raise InputError(f"{source}: not found (from {url})")
        return source, verify(source, expected_sha256)
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "archive"
    target = cache_dir / name
    if target.is_file():
        return target, verify(target, expected_sha256)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"{name}.part"
    _stream(url, partial)
    try:
        digest = verify(partial, expected_sha256)
    except InputError:
        partial.unlink()  # a corrupt download must not be resumed
        raise
    os.replace(partial, target)
    return target, digest


def _stream(url: str, partial: Path) -> None:
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # already complete
            return
        raise InputError(f"{url}: download failed (HTTP {error.code} {error.reason})") from None
    except urllib.error.URLError as error:
        raise InputError(f"{url}: download failed ({error.reason})") from None
    with response:
        resumed = done and response.status == 206
        if done and not resumed:
            log.info("%s: server ignored the resume request, starting over", url)
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length else None
        with (
            open(partial, "ab" if resumed else "wb") as handle,
            tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=partial.name) as bar,
        ):
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:  # connection dropped or timed out
                    raise InputError(
                        f"{url}: transfer interrupted at {handle.tell()} bytes ({error!r}); "
                        f"rerun to resume into {partial}"
                    ) from None
                if not block:
                    break
                try:
                    handle.write(block)
                except OSError as error:
                    raise InputError(f"{partial}: cannot write the download ({error.strerror or error})") from None
                bar.update(len(block))
        if total is not None and partial.stat().st_size != total:
            raise InputError(
                f"{url}: transfer interrupted at {partial.stat().st_size} of {total} bytes; rerun to resume"
            )
