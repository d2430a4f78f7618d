"""Demo inputs: a miniature dataset generated in the real layout, packed like the original archive.

The archive is byte-reproducible (sorted members, fixed times and owners) and written together with
a `.sha256` file, so the demo fetches it through the same download code, checksum included, as a
real dataset.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

from adfm.datasets import LAYOUTS
from adfm.datasets.synthetic import DemoSpec
from adfm.io import atomic_path, write_text_atomic


def pack_tar(folder: Path, archive: Path) -> None:
    """Pack `folder`'s contents (not the folder itself) into a reproducible tar, compressed by suffix."""
    mode = {".xz": "w:xz", ".gz": "w:gz", ".bz2": "w:bz2"}.get(archive.suffix, "w")
    with atomic_path(archive) as tmp, tarfile.open(tmp, mode) as bundle:
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


def make_demo_archive(layout: str, archive: Path, spec: DemoSpec) -> str:
    """Write the demo archive of `layout` and `<archive>.sha256`; return the sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        LAYOUTS[layout].make_demo(Path(tmp), spec)
        pack_tar(Path(tmp), archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    write_text_atomic(archive.with_name(archive.name + ".sha256"), f"{digest}  {archive.name}\n")
    return digest


def register(subparsers) -> None:
    parser = subparsers.add_parser("make-demo-archive", help="generate a miniature dataset archive in a real layout")
    parser.add_argument("--layout", required=True, choices=sorted(LAYOUTS))
    parser.add_argument("--out", required=True, type=Path, help="archive path (.tar.xz)")
    parser.add_argument("--categories", required=True, nargs="+")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--train-good", type=int, default=10)
    parser.add_argument("--test-good", type=int, default=6)
    parser.add_argument("--test-defective-per-type", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(
        func=lambda a: make_demo_archive(
            a.layout, a.out,
            DemoSpec(tuple(a.categories), a.image_size, a.train_good, a.test_good, a.test_defective_per_type, a.seed),
        )
    )
