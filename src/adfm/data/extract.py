"""Extract an archive (.tar, .tar.gz/.xz/.bz2 or .zip) safely: into a temporary folder beside the
target, renamed at the end, refusing any member that would land outside it (`..`, absolute paths,
links)."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from adfm.io import InputError, atomic_path


def _check_member(archive: Path, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith("\\"):
        raise InputError(f"{archive}: member {name!r} would be written outside the target folder")


def extract(archive: Path, out_dir: Path, strip_components: int = 0, extra_files: list[Path] = ()) -> None:
    """Extract a .tar(.gz/.xz/.bz2) or .zip into out_dir, atomically and without path escapes;
    `extra_files` are copied in beside the archive's contents."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as bundle:
                    for member in bundle.infolist():
                        _check_member(archive, member.filename)
                    bundle.extractall(tmp)
            else:
                with tarfile.open(archive) as bundle:
                    members = bundle.getmembers()
                    for member in members:
                        _check_member(archive, member.name)
                        if member.issym() or member.islnk():
                            raise InputError(f"{archive}: member {member.name!r} is a link; links are refused")
                    bundle.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
            raise InputError(f"{archive}: cannot extract ({error}); the archive may be truncated or corrupt") from None
        if strip_components:
            _strip(tmp, strip_components, archive)
        for path in extra_files:
            shutil.copyfile(path, tmp / path.name)


def _strip(folder: Path, levels: int, archive: Path) -> None:
    """Drop `levels` single wrapping folders (archives that nest everything under one folder)."""
    for _ in range(levels):
        entries = list(folder.iterdir())
        if len(entries) != 1 or not entries[0].is_dir():
            raise InputError(f"{archive}: expected a single top-level folder to strip, found {len(entries)} entries")
        inner = entries[0]
        for child in inner.iterdir():
            shutil.move(str(child), folder / child.name)
        inner.rmdir()
