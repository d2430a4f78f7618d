"""Demo archive -> download -> index, and the errors of each on bad input."""

import hashlib
import io
import json
import tarfile

import pytest
import yaml

from adfm.data.datasets import manifest, mvtec_ad
from adfm.data.datasets.synthetic import DemoSpec
from adfm.data.demo_archive import make_demo_archive
from adfm.data.download import download
from adfm.data.extract import extract
from adfm.data.fetch import local_path
from adfm.data.index import index
from adfm.io import InputError

SPEC = DemoSpec(categories=("bottle", "wood"), image_size=56, train_good=3, test_good=2, test_defective_per_type=2)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "mvtec_anomaly_detection.tar.xz"
    make_demo_archive("mvtec_ad", path, SPEC)
    return path


def test_demo_archive_is_reproducible_and_has_the_mvtec_layout(archive, tmp_path):
    again = tmp_path / archive.name
    make_demo_archive("mvtec_ad", again, SPEC)
    assert again.read_bytes() == archive.read_bytes()
    with tarfile.open(archive) as bundle:
        names = set(bundle.getnames())
    assert {
        "bottle/train/good/000.png",
        "bottle/test/good/001.png",
        "bottle/test/blob/000.png",
        "bottle/ground_truth/blob/000_mask.png",
        "wood/test/scratch/001.png",
        "bottle/license.txt",
    } <= names


def test_download_index_round_trip(archive, tmp_path):
    out = tmp_path / "mvtec_ad"
    checksum = archive.with_name(archive.name + ".sha256")
    download(f"file:{archive}", out, cache_dir=tmp_path / "cache", sha256=None, checksum_file=checksum)
    index(out, "mvtec_ad", "mvtec_ad", None, tmp_path / "manifest.csv")
    frame = manifest.read(tmp_path / "manifest.csv")
    assert list(frame.columns) == manifest.COLUMNS
    per_category = frame.groupby(["category", "source_split", "label"]).size().to_dict()
    assert per_category[("bottle", "train", 0)] == 3
    assert per_category[("bottle", "test", 0)] == 2
    assert per_category[("bottle", "test", 1)] == 4  # 2 defect types x 2
    anomalous = frame[frame.label == 1]
    assert all(len(paths) == 1 and paths[0].endswith("_mask.png") for paths in anomalous.mask_paths)
    assert (frame.width == 56).all() and (frame.height == 56).all()
    assert not (tmp_path / "cache").exists()  # local archives are read in place, not copied


def test_wrong_checksum_names_the_file_and_writes_nothing(archive, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"{archive.name}: sha256 mismatch"):
        download(str(archive), out, cache_dir=tmp_path, sha256="0" * 64, checksum_file=None)
    assert not out.exists()


def test_truncated_archive_is_a_clear_error(archive, tmp_path):
    truncated = tmp_path / "cut.tar.xz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.tar.xz: cannot extract"):
        extract(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cut.tar.xz"]  # no temporary folder left behind


def _tar_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as bundle:
        member.size = len(data) if member.isreg() else 0
        bundle.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt", "a/../../escape.txt"])
def test_members_escaping_the_target_are_refused(tmp_path, name):
    path = _tar_with(tmp_path, tarfile.TarInfo(name))
    with pytest.raises(InputError, match="outside the target folder"):
        extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_refused(tmp_path, kind):
    member = tarfile.TarInfo("link")
    member.type, member.linkname = kind, "/etc/passwd"
    with pytest.raises(InputError, match="is a link"):
        extract(_tar_with(tmp_path, member), tmp_path / "out")


def test_anomalous_image_without_mask_is_an_error(archive, tmp_path):
    extract(archive, tmp_path / "d")
    (tmp_path / "d" / "bottle" / "ground_truth" / "blob" / "001_mask.png").unlink()
    with pytest.raises(InputError, match=r"bottle/test/blob/001.png: anomalous image without a mask"):
        mvtec_ad.parse(tmp_path / "d", "mvtec_ad")


def test_unknown_category_and_wrong_layout_are_errors(archive, tmp_path):
    extract(archive, tmp_path / "d")
    with pytest.raises(InputError, match=r"categories \['cable'\] not found"):
        mvtec_ad.parse(tmp_path / "d", "mvtec_ad", ["cable"])
    with pytest.raises(InputError, match="not an MVTec AD layout"):
        mvtec_ad.parse(tmp_path, "mvtec_ad")


def test_unreadable_image_is_an_error(archive, tmp_path):
    extract(archive, tmp_path / "d")
    (tmp_path / "d" / "wood" / "train" / "good" / "000.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="000.png: unreadable image"):
        mvtec_ad.parse(tmp_path / "d", "mvtec_ad")


def test_local_path_forms():
    assert str(local_path("file:///data/x.tar")) == "/data/x.tar"
    assert str(local_path("file:resources/x.tar")) == "resources/x.tar"
    assert str(local_path("resources/x.tar")) == "resources/x.tar"
    assert local_path("https://example.org/x.tar") is None
    with pytest.raises(InputError, match="unsupported URL scheme"):
        local_path("s3://bucket/x.tar")


def test_unpublished_checksum_is_recorded_then_checked(archive, tmp_path):
    lock = tmp_path / "checksums.lock"
    url = f"file:{archive}"
    download(url, tmp_path / "one", cache_dir=tmp_path, sha256=None, checksum_file=None, lock_file=lock)
    assert len(json.loads(lock.read_text())[url]) == 64
    download(url, tmp_path / "two", cache_dir=tmp_path, sha256=None, checksum_file=None, lock_file=lock)
    lock.write_text(json.dumps({url: "0" * 64}))
    with pytest.raises(InputError, match=f"sha256 mismatch.*delete the '{url}' entry from {lock}"):
        download(url, tmp_path / "three", cache_dir=tmp_path, sha256=None, checksum_file=None, lock_file=lock)
    assert not (tmp_path / "three").exists()


def test_truncated_archive_is_not_recorded_so_the_good_one_is_accepted(archive, tmp_path):
    lock, path = tmp_path / "checksums.lock", tmp_path / "by_hand.tar.xz"
    path.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot extract"):
        download(f"file:{path}", tmp_path / "out", cache_dir=tmp_path, sha256=None, checksum_file=None, lock_file=lock)
    assert not lock.exists() or json.loads(lock.read_text()) == {}
    path.write_bytes(archive.read_bytes())  # the user replaces it with the complete archive
    download(f"file:{path}", tmp_path / "out", cache_dir=tmp_path, sha256=None, checksum_file=None, lock_file=lock)
    assert json.loads(lock.read_text()) == {f"file:{path}": hashlib.sha256(archive.read_bytes()).hexdigest()}


def test_source_record_says_what_was_used(archive, tmp_path):
    record = tmp_path / "sources" / "mvtec_ad.yaml"
    download(
        f"file:{archive}",
        tmp_path / "mvtec_ad",
        cache_dir=tmp_path,
        sha256=None,
        checksum_file=None,
        source_record=record,
    )
    written = yaml.safe_load(record.read_text())
    assert written["url"] == f"file:{archive}" and written["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    extract(archive, tmp_path / "by_hand")
    download(
        str(tmp_path / "by_hand"),
        tmp_path / "linked",
        cache_dir=tmp_path,
        sha256=None,
        checksum_file=None,
        source_record=record,
    )
    assert yaml.safe_load(record.read_text())["folder"] == str((tmp_path / "by_hand").resolve())


def test_manual_dataset_without_url_says_what_to_do(tmp_path):
    with pytest.raises(
        InputError, match="goodsad: this dataset must be downloaded by hand. Get the zips.*datasets.goodsad.url"
    ):
        download(
            None, tmp_path / "goodsad", cache_dir=tmp_path, sha256=None, checksum_file=None, manual="Get the zips."
        )


def test_extracted_folder_is_linked_not_copied(archive, tmp_path):
    extract(archive, tmp_path / "by_hand")
    download(str(tmp_path / "by_hand"), tmp_path / "linked", cache_dir=tmp_path, sha256=None, checksum_file=None)
    assert (tmp_path / "linked").is_symlink() and (tmp_path / "linked" / "bottle" / "train").is_dir()


def test_extra_files_land_beside_the_archive_contents(archive, tmp_path):
    extra = tmp_path / "mmad.json"
    extra.write_text("{}")
    download(
        f"file:{archive}",
        tmp_path / "out",
        cache_dir=tmp_path,
        sha256=None,
        checksum_file=None,
        extra_files=[{"url": f"file:{extra}"}],
    )
    assert (tmp_path / "out" / "mmad.json").read_text() == "{}"
    assert (tmp_path / "out" / "bottle").is_dir()


def test_truncated_image_is_rejected_by_index_naming_it(archive, tmp_path):
    extract(archive, tmp_path / "d")
    image = tmp_path / "d" / "bottle" / "test" / "blob" / "000.png"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # its header still reads
    with pytest.raises(InputError, match=f"{image}: unreadable image \\(image file is truncated"):
        index(tmp_path / "d", "mvtec_ad", "mvtec_ad", None, tmp_path / "manifest.csv", count_check=False)
    assert not (tmp_path / "manifest.csv").exists()


def test_mask_of_another_size_than_its_image_is_rejected(archive, tmp_path):
    from PIL import Image

    extract(archive, tmp_path / "d")
    mask = tmp_path / "d" / "wood" / "ground_truth" / "scratch" / "001_mask.png"
    Image.open(mask).resize((112, 28)).save(mask)
    (tmp_path / "linked").symlink_to(tmp_path / "d")  # as a manual download's folder is linked
    with pytest.raises(
        InputError,
        match=f"(?s)mask is 112x28, its image .*wood/test/scratch/001.png is 56x56.*"
        f"linked is a link to {tmp_path / 'd'}",
    ):
        index(tmp_path / "linked", "mvtec_ad", "mvtec_ad", None, tmp_path / "manifest.csv", count_check=False)


def test_category_without_train_folder_says_so(archive, tmp_path):
    import shutil

    extract(archive, tmp_path / "d")
    shutil.rmtree(tmp_path / "d" / "bottle" / "train")
    with pytest.raises(InputError, match=f"{tmp_path / 'd' / 'bottle'}: no train/ folder in this category"):
        mvtec_ad.parse(tmp_path / "d", "mvtec_ad", ["bottle", "wood"])
    shutil.rmtree(tmp_path / "d" / "wood" / "test")  # no category complete: still named, not "not a layout"
    with pytest.raises(InputError, match=f"{tmp_path / 'd' / 'wood'}: no test/ folder in this category"):
        mvtec_ad.parse(tmp_path / "d", "mvtec_ad", ["wood"])


def test_truncated_jpeg_is_caught_by_the_reduced_scale_decode(tmp_path):
    import numpy as np
    from PIL import Image

    from adfm.data.index import decoded_size

    path = tmp_path / "000.JPG"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(path)
    assert decoded_size(path) == (320, 240)  # the full size, not the 1/8 the decoder worked at
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=f"{path}: unreadable image \\(image file is truncated"):
        decoded_size(path)
