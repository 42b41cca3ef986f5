"""Codec package format: digests, hash verification, archives and safe extraction."""

import io
import json
import tarfile

import pytest

from codec.errors import PackageError
from codec.package import CodecPackage, archive_bytes, extract_archive, write_archive, write_package

FILES = {"analysis.onnx": b"graph-a", "tables.npz": b"\x00\x01tables", "certificate.json": b"{}"}


@pytest.fixture
def package_dir(tmp_path):
    out = tmp_path / "pkg"
    write_package(out, {"precision": "int16", "N": 64, "sigma_range": [0.11, 256.0]}, FILES)
    return out


def test_directory_round_trip(package_dir):
    package = CodecPackage.load(package_dir)
    assert len(package.digest) == 64
    assert package.read("tables.npz") == FILES["tables.npz"]
    assert package.manifest["files"]["analysis.onnx"]["size"] == len(FILES["analysis.onnx"])
    assert package.precision == "int16"


def test_archive_shares_the_digest_and_is_deterministic(package_dir, tmp_path):
    digest = write_archive(package_dir, tmp_path / "a.bmpkg")
    again = write_archive(package_dir, tmp_path / "b.bmpkg")
    assert digest == again == CodecPackage.load(package_dir).digest
    assert (tmp_path / "a.bmpkg").read_bytes() == (tmp_path / "b.bmpkg").read_bytes()
    assert CodecPackage.load(tmp_path / "a.bmpkg").digest == digest
    extracted = extract_archive((tmp_path / "a.bmpkg").read_bytes(), tmp_path / "x", expected_digest=digest)
    assert extracted.read("analysis.onnx") == FILES["analysis.onnx"]
    with pytest.raises(PackageError, match="expected"):
        extract_archive((tmp_path / "a.bmpkg").read_bytes(), tmp_path / "y", expected_digest="0" * 64)


def test_tampered_file_is_refused(package_dir):
    (package_dir / "tables.npz").write_bytes(b"\x00\x01tablez")
    with pytest.raises(PackageError, match="SHA-256"):
        CodecPackage.load(package_dir)


def test_tampered_manifest_is_refused(package_dir):
    manifest = json.loads((package_dir / "manifest.json").read_text())
    manifest["N"] = 32
    (package_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="digest"):
        CodecPackage.load(package_dir)


def test_manifest_naming_a_path_outside_the_package_is_refused(tmp_path):
    with pytest.raises(PackageError, match="plain names"):
        write_package(tmp_path / "p", {"precision": "int16"}, {"../evil": b"x"})


def test_symlinked_file_is_refused(package_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(FILES["tables.npz"])
    (package_dir / "tables.npz").unlink()
    (package_dir / "tables.npz").symlink_to(outside)
    with pytest.raises(PackageError, match="regular file"):
        CodecPackage.load(package_dir)


def _archive(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def _valid_members(package_dir):
    package = CodecPackage.load(package_dir)
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(package))) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_member("../evil.onnx"), "leaves the package"),
        (_member("/etc/evil"), "leaves the package"),
        (_member("sub/evil"), "plain names"),
        (_member("link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
        (_member("hard", kind=tarfile.LNKTYPE, link="tables.npz"), "link"),
        (_member("dir", kind=tarfile.DIRTYPE), "non-regular"),
        (_member("tables.npz", b"\x00\x01tables"), "twice"),
    ],
)
def test_unsafe_archives_are_refused(package_dir, tmp_path, extra, message):
    data = _archive([*_valid_members(package_dir), extra])
    with pytest.raises(PackageError, match=message):
        extract_archive(data, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "evil.onnx").exists()


def test_oversize_member_is_refused(package_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("codec.package.MAX_MEMBER_BYTES", 4)
    with pytest.raises(PackageError, match="larger than"):
        extract_archive(archive_bytes(CodecPackage.load(package_dir)), tmp_path / "dest")


def test_archive_with_an_unlisted_file_is_refused(package_dir, tmp_path):
    data = _archive([*_valid_members(package_dir), _member("extra.bin")])
    with pytest.raises(PackageError, match="does not list"):
        extract_archive(data, tmp_path / "dest")


def test_garbage_is_refused(tmp_path):
    bogus = tmp_path / "bogus.bmpkg"
    bogus.write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(PackageError):
        CodecPackage.load(bogus)
    with pytest.raises(PackageError, match="not found"):
        CodecPackage.load(tmp_path / "missing")
