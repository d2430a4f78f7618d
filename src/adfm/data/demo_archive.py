"""Demo inputs: a miniature dataset generated in the real layout, packed like the original archive.

The archive format follows its name's suffix, as the originals are packed: `.tar.xz` (MVTec AD,
MVTec LOCO), `.tar` (VisA), `.zip` (MMAD, GoodsAD, MPDD, DTD-Synthetic, DAGM); `.tar.gz` and
`.tar.bz2` work too. The archive is byte-reproducible (sorted members, fixed times, owners and
permissions, in zip entries too) and written together with a `.sha256` file, so the demo fetches it
through the same download code, checksum included, as a real dataset.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

from adfm.data.datasets import LAYOUTS
from adfm.data.datasets.synthetic import DemoSpec
from adfm.io import InputError, atomic_path, write_text_atomic

TAR_SUFFIXES = (".tar", ".tar.xz", ".tar.gz", ".tgz", ".tar.bz2")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def pack_tar(folder: Path, archive: Path) -> None:
    """Pack `folder`'s contents (not the folder itself) into a reproducible tar, compressed by suffix."""
    mode = {".xz": "w:xz", ".bz2": "w:bz2"}.get(archive.suffix, "w")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(archive))
        if archive.suffix in (".gz", ".tgz"):  # gzip headers hold a time: fix it
            raw = stack.enter_context(open(tmp, "wb"))
            target = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
            bundle = stack.enter_context(tarfile.open(fileobj=target, mode="w"))
        else:
            bundle = stack.enter_context(tarfile.open(tmp, mode))
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                bundle.addfile(info)
            else:
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                bundle.addfile(info, io.BytesIO(data))


def pack_zip(folder: Path, archive: Path) -> None:
    """Pack `folder`'s contents into a reproducible zip (deflated; folders as their own entries)."""
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            is_dir = path.is_dir()
            info = zipfile.ZipInfo(name + "/" if is_dir else name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix, so the permission bits below are read back
            info.external_attr = ((0o40755 << 16) | 0x10) if is_dir else (0o100644 << 16)
            if is_dir:
                bundle.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes(), compresslevel=9)


def pack(folder: Path, archive: Path) -> None:
    """Pack `folder` in the format `archive`'s name says."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        pack_zip(folder, archive)
    elif name.endswith(TAR_SUFFIXES):
        pack_tar(folder, archive)
    else:
        raise InputError(f"{archive}: unknown archive format; name it .zip, {', '.join(TAR_SUFFIXES)}")


def make_demo_archive(layout: str, archive: Path, spec: DemoSpec) -> str:
    """Write the demo archive of `layout` and `<archive>.sha256`; return the sha256.

    The format comes from the archive's suffix (see the module docstring)."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        LAYOUTS[layout].make_demo(Path(tmp), spec)
        pack(Path(tmp), archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    write_text_atomic(archive.with_name(archive.name + ".sha256"), f"{digest}  {archive.name}\n")
    return digest


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-demo-archive",
        help="generate a miniature dataset archive in a real layout",
        description="Generate a miniature copy of a dataset (synthetic textures with drawn defects and their "
        "masks) in the exact on-disk layout of the real one, packed like the original archive, with "
        "a .sha256 file beside it. The demo downloads it through the real download code.",
    )
    parser.add_argument("--layout", required=True, choices=sorted(LAYOUTS), help="the dataset layout to imitate")
    parser.add_argument(
        "--out", required=True, type=Path, help="archive path; its suffix picks the format (.tar.xz, .tar, .zip, ...)"
    )
    parser.add_argument(
        "--categories",
        required=True,
        nargs="+",
        help="category folders (MMAD: <Dataset>/<category>, e.g. DS-MVTec/bottle)",
    )
    parser.add_argument("--image-size", type=int, default=112, help="image side in pixels (default: %(default)s)")
    parser.add_argument(
        "--train-good", type=int, default=10, help="normal training images per category (default: %(default)s)"
    )
    parser.add_argument(
        "--test-good", type=int, default=6, help="normal test images per category (default: %(default)s)"
    )
    parser.add_argument(
        "--test-defective-per-type",
        type=int,
        default=4,
        help="anomalous test images per defect type (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default: %(default)s)"
    )
    parser.add_argument(
        "--sources",
        nargs="*",
        default=[],
        type=_source,
        help="MMAD only: SOURCE=ARCHIVE, the demo archive whose images MMAD's SOURCE (DS-MVTec, "
        "MVTec-LOCO, VisA, GoodsAD) holds; generated when absent",
    )
    parser.set_defaults(func=lambda a: make_demo_archive(a.layout, a.out, _spec(a)))


def _spec(args: argparse.Namespace) -> DemoSpec:
    sizes = {name: getattr(args, name) for name in ("image_size", "train_good", "test_good", "test_defective_per_type")}
    return DemoSpec(tuple(args.categories), **sizes, seed=args.seed, sources=tuple(args.sources))


def _source(value: str) -> tuple[str, str]:
    source, sep, archive = value.partition("=")
    if not sep or not source or not archive:
        raise argparse.ArgumentTypeError(f"{value!r}: expected SOURCE=ARCHIVE")
    return source, archive
