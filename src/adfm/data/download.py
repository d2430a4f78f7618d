"""Download stage: fetch an archive (https, or a local file for manual downloads; adfm.data.fetch),
verify its sha256, and extract it safely into the dataset folder (adfm.data.extract).

Where no checksum is published, the first download that extracts cleanly records the archive's
sha256 in a lock file (JSON, keyed by URL) and later downloads are checked against it, so a silently
changed upstream archive is noticed. An archive that fails to extract (truncated, corrupt) is never
recorded, so replacing it with a good copy just works.

Each download also writes a source record (YAML): where the data came from (URL, or the folder a
manual download was linked from), the sha256 of what was extracted, and when. The provenance stage
reads these records, so provenance describes the data a run used, not what the config says now.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path

import yaml

from adfm.data.checksums import check_lock, read_checksum_file, record_lock
from adfm.data.extract import extract
from adfm.data.fetch import fetch, local_path
from adfm.io import InputError, atomic_path

log = logging.getLogger(__name__)

# download()'s keyword arguments, each the option of the same name
_OPTIONS = (
    "cache_dir",
    "sha256",
    "checksum_file",
    "strip_components",
    "lock_file",
    "extra_files",
    "manual",
    "source_record",
)


def write_source_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))


def download(
    url: str | None,
    out_dir: Path,
    *,
    cache_dir: Path,
    sha256: str | None,
    checksum_file: Path | None,
    strip_components: int = 0,
    lock_file: Path | None = None,
    extra_files: list[dict] = (),
    manual: str | None = None,
    source_record: Path | None = None,
) -> None:
    """Fetch, verify and extract one dataset into out_dir (see the module docstring).

    `extra_files` ({"url", "sha256"} entries) are fetched as they are into the dataset folder (MMAD's
    mmad.json beside its image archive). `manual` is the instruction shown when `url` is missing.
    `source_record`, when given, receives what was used (see the module docstring).
    """
    if not url:
        raise InputError(
            f"{out_dir.name}: this dataset must be downloaded by hand. {manual or ''} "
            f"Then set datasets.{out_dir.name}.url in your config to the archive or extracted folder."
        )
    expected = read_checksum_file(checksum_file) if checksum_file else sha256
    record = {"dataset": out_dir.name, "url": url}
    source = local_path(url)
    if source is not None and source.is_dir():
        # An already extracted folder (manual download): link it rather than copy gigabytes.
        with atomic_path(out_dir) as tmp:
            tmp.symlink_to(source.resolve(), target_is_directory=True)
        record["folder"] = str(source.resolve())
    elif source is not None and not source.exists():
        raise InputError(f"{source}: no such archive or folder (datasets.{out_dir.name}.url is {url!r})")
    else:
        record.update(_fetch_and_extract(url, out_dir, cache_dir, expected, strip_components, lock_file, extra_files))
    if source_record is not None:
        record["downloaded"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        write_source_record(source_record, record)


def _fetch_and_extract(
    url: str,
    out_dir: Path,
    cache_dir: Path,
    expected: str | None,
    strip_components: int,
    lock_file: Path | None,
    extra_files: list[dict],
) -> dict:
    """Fetch, check and extract; record unpublished checksums only once all extracted. The record's part."""
    archive, digest = fetch(url, cache_dir, expected)
    files = [(extra, *fetch(extra["url"], cache_dir, extra.get("sha256"))) for extra in extra_files]
    unpublished = {url: digest} if expected is None else {}
    unpublished.update({extra["url"]: sha for extra, _, sha in files if extra.get("sha256") is None})
    if lock_file is not None:
        paths = {url: archive, **{extra["url"]: path for extra, path, _ in files}}
        for key, value in unpublished.items():
            check_lock(paths[key], key, value, lock_file)
    elif unpublished:
        log.warning("%s: no checksum configured, integrity not verified", ", ".join(unpublished))
    log.info("extracting %s into %s", archive, out_dir)
    try:
        extract(archive, out_dir, strip_components, extra_files=[path for _, path, _ in files])
    except InputError as error:
        if archive.parent == cache_dir:  # a downloaded copy: the next run would reuse it
            raise InputError(f"{error}; delete {archive} to download it again") from None
        raise
    if lock_file is not None and unpublished:
        record_lock(unpublished, lock_file)
    return {"sha256": digest, "extra_files": [{"url": extra["url"], "sha256": sha} for extra, _, sha in files]}


def _extra_files(text: str) -> list[dict]:
    """argparse type of --extra-files: a bad value is a usage error, not a traceback."""
    try:
        files = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("url"), str) for f in files):
        raise argparse.ArgumentTypeError(f'expected a JSON list of {{"url", "sha256"}} objects, got {text}')
    return files


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download",
        help="fetch, verify and extract a dataset archive",
        description="Fetch a dataset archive (https, or a local file for a manual download), check its sha256 "
        "and extract it into --out; a folder given as --url is linked instead. Archives without a "
        "published checksum are checked against --lock-file (recorded there once they extract "
        "cleanly). --source-record receives where the data came from, for the provenance.",
    )
    parser.add_argument(
        "--url",
        help="https URL, file: URL or local path (archive or extracted folder); none: a manual download, see --manual",
    )
    parser.add_argument("--manual", help="how to download by hand (shown when --url is missing)")
    parser.add_argument(
        "--lock-file",
        type=Path,
        help="JSON file recording checksums of archives without a "
        "published one (delete an entry to accept a new archive)",
    )
    parser.add_argument(
        "--extra-files",
        default=[],
        type=_extra_files,
        help='JSON list of {"url", "sha256"} fetched into the folder as they are (default: none)',
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to extract into")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("resources/archives"),
        help="where remote archives are downloaded to (default: %(default)s)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sha256", help="expected sha256 of the archive")
    group.add_argument("--checksum-file", type=Path, help="file holding the expected sha256 (sha256sum format)")
    parser.add_argument(
        "--strip-components",
        type=int,
        default=0,
        help="single wrapping folders to drop from the archive's contents (default: 0)",
    )
    parser.add_argument(
        "--source-record", type=Path, help="YAML file to write the source record to (URL or folder, sha256, time)"
    )
    parser.set_defaults(func=lambda a: download(a.url, a.out, **{name: getattr(a, name) for name in _OPTIONS}))
