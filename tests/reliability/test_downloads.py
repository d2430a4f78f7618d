"""Downloads under failure: interrupted transfers resume, corrupt and hostile archives are refused
with a clear error naming the file, and nothing half-written lands where an output belongs."""

import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import count_cases

from adfm.data.extract import extract
from adfm.data.fetch import CHUNK, fetch
from adfm.io import InputError

DOWNLOAD_CASES = "download failures: a clear error naming the file, no partial output"


class RangeServer(http.server.BaseHTTPRequestHandler):
    """Serves `payload`, honouring Range; with `cut_after` set, drops the first connection early."""

    payload = b""
    cut_after: int | None = None
    ranges_seen: ClassVar[list] = []

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            type(self).ranges_seen.append(start)
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(body[: type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.shutdown(2)  # the transfer breaks part-way
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    payload = os.urandom(3 * CHUNK + 12345)
    handler = type("Handler", (RangeServer,), {"payload": payload, "cut_after": CHUNK + 7, "ranges_seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data.bin", payload, handler
    httpd.shutdown()


def test_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    url, payload, handler = server
    digest = hashlib.sha256(payload).hexdigest()
    with pytest.raises(InputError, match="transfer interrupted.*rerun to resume"):
        fetch(url, tmp_path, digest)
    partial = tmp_path / "data.bin.part"
    assert 0 < partial.stat().st_size < len(payload)
    assert not (tmp_path / "data.bin").exists()  # nothing where the output belongs
    received = partial.stat().st_size
    path, fetched_digest = fetch(url, tmp_path, digest)
    assert path.read_bytes() == payload and fetched_digest == digest
    assert handler.ranges_seen == [received]  # the rerun asked only for the missing bytes
    assert not partial.exists()
    count_cases(DOWNLOAD_CASES)


def test_wrong_checksum_after_download_discards_it(server, tmp_path):
    url, _payload, handler = server
    handler.cut_after = None
    with pytest.raises(InputError, match="data.bin.part: sha256 mismatch"):
        fetch(url, tmp_path, "0" * 64)
    assert list(tmp_path.iterdir()) == []  # a corrupt download is not kept for resuming
    count_cases(DOWNLOAD_CASES)


def test_write_error_part_way_is_clear(server, tmp_path, monkeypatch):
    url, _payload, handler = server
    handler.cut_after = None
    real_open = open

    class FullDisk(io.FileIO):
        def write(self, data):
            if self.tell() > CHUNK:
                raise OSError(28, "No space left on device")
            return super().write(data)

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            return FullDisk(path, mode.replace("b", ""))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(InputError, match="data.bin.part: cannot write the download \\(No space left on device\\)"):
        fetch(url, tmp_path, None)
    assert not (tmp_path / "data.bin").exists()
    count_cases(DOWNLOAD_CASES)


def test_unreachable_server_is_clear(tmp_path):
    with pytest.raises(InputError, match="127.0.0.1:9/x.tar: download failed"):
        fetch("http://127.0.0.1:9/x.tar", tmp_path, None)
    count_cases(DOWNLOAD_CASES)


def evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as bundle:
        if member.isreg():
            member.size = len(data)
            bundle.addfile(member, io.BytesIO(data))
        else:
            bundle.addfile(member)
    return path


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (_member("../escape"), "outside the target folder"),
        (_member("/etc/evil"), "outside the target folder"),
        (_member("ok/../../escape"), "outside the target folder"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_member("link", tarfile.SYMTYPE, "../../outside"), "is a link"),
        (_member("hard", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
    ],
)
def test_hostile_members_are_refused(tmp_path, member, message):
    archive = evil_tar(tmp_path / "evil.tar", member)
    with pytest.raises(InputError, match=f"evil.tar: member .* {message}"):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar"]
    count_cases(DOWNLOAD_CASES)


def test_zip_member_escaping_is_refused(tmp_path):
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../escape.txt", "x")
    with pytest.raises(InputError, match="evil.zip: member '../escape.txt' would be written outside"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    count_cases(DOWNLOAD_CASES)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_archives_are_refused(tmp_path, cut):
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(200_000))
    archive = tmp_path / "full.tar.xz"
    with tarfile.open(archive, "w:xz") as bundle:
        bundle.add(source / "a.bin", arcname="a.bin")
    cut_archive = tmp_path / "cut.tar.xz"
    cut_archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * cut)])
    with pytest.raises(InputError, match="cut.tar.xz: cannot extract"):
        extract(cut_archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    count_cases(DOWNLOAD_CASES)
