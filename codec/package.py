"""Codec packages: a directory (or a single-file tar archive of it) holding everything a codec needs.

Layout: `manifest.json` plus the files it lists, all at the top level of the package:

    {
      "format": "bitmatch-codec-package",
      "format_version": 1,
      "precision": "int16" | "int8" | "float" | "int16-full",
      "N": <scale levels>,
      "sigma_range": [sigma_min, sigma_max],
      "architecture": {"n": ..., "m": ..., "levels": ..., "mean_bits": ..., "sigma_min": ..., ...},
      "files": {"analysis.onnx": {"sha256": "...", "size": ...}, ...},
      ...                       (any further metadata: seed, certificate summary, ...)
      "digest": "<hex SHA-256>"
    }

The digest is the SHA-256 of the canonical JSON of the manifest without its `digest` field (sorted keys, no
whitespace, ASCII). Because the manifest lists every file's SHA-256, the digest names the package's whole
content, and a directory and its archive share one digest.

Loading verifies the format, the digest and every listed file's size and hash, and refuses file names that
are not plain names (no separators, no "..", no absolute paths) as well as symbolic links. Archives are
uncompressed POSIX tar files written deterministically (sorted members, zero mtimes and ids); they are read
member by member into memory, never with `extractall`, and refused when a member is not a regular file (a
sparse one included), is named outside the package, appears twice, or is larger than the limits below.
"""

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

from codec.errors import PackageError
from codec.vocabulary import Precision

FORMAT = "bitmatch-codec-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The files a package lists, by role (a family ships the ones it needs)
ANALYSIS, SYNTHESIS, HYPER_SYNTHESIS = "analysis.onnx", "synthesis.onnx", "hyper_synthesis.onnx"
LEVEL_TABLES, Z_TABLES = "level_tables.npz", "z_tables.npz"
WEIGHTS, CERTIFICATE = "weights.npz", "certificate.json"
PRECISIONS = (Precision.INT16, Precision.INT8, Precision.FLOAT, Precision.INT16_FULL)
MAX_MEMBER_BYTES = 512 * 2**20
MAX_ARCHIVE_MEMBERS = 64
MAX_ARCHIVE_BYTES = 1024 * 2**20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the canonical manifest without its `digest` field."""
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "digest"})).hexdigest()


def check_name(name: str) -> str:
    """Return `name` if it is a plain file name inside a package, else raise PackageError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise PackageError(f"refusing file name {name!r}: package files must be plain names in the package")
    return name


class CodecPackage:
    """A verified codec package. `read(name)` returns a listed file's bytes (already hash-checked)."""

    def __init__(self, path: Path, manifest: dict, files: dict[str, bytes]) -> None:
        self.path = path
        self.manifest = manifest
        self.digest: str = manifest["digest"]
        self._files = files

    @classmethod
    def load(cls, path: str | Path) -> "CodecPackage":
        """Load a package directory or archive, verifying the manifest digest and every file hash."""
        path = Path(path)
        if path.is_dir():
            return cls._load_dir(path)
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise PackageError(f"cannot read codec package {path}: {exc.strerror or exc}") from None
            return cls.from_files(path, _read_archive(data))
        raise PackageError(f"codec package not found: {path}")

    @classmethod
    def _load_dir(cls, path: Path) -> "CodecPackage":
        manifest = _parse_manifest(_read_member_file(path, MANIFEST))
        files = {name: _read_member_file(path, name) for name in manifest["files"]}
        return cls._verified(path, manifest, files)

    @classmethod
    def from_files(cls, path: Path, files: dict[str, bytes]) -> "CodecPackage":
        """Build a package from in-memory files (as read from an archive), verifying everything."""
        if MANIFEST not in files:
            raise PackageError(f"codec package {path} has no {MANIFEST}")
        manifest = _parse_manifest(files[MANIFEST])
        extra = set(files) - set(manifest["files"]) - {MANIFEST}
        if extra:
            raise PackageError(f"codec package {path} has files the manifest does not list: {sorted(extra)}")
        missing = set(manifest["files"]) - set(files)
        if missing:
            raise PackageError(f"codec package {path} lacks listed files: {sorted(missing)}")
        return cls._verified(path, manifest, {name: files[name] for name in manifest["files"]})

    @classmethod
    def _verified(cls, path: Path, manifest: dict, files: dict[str, bytes]) -> "CodecPackage":
        for name, entry in manifest["files"].items():
            data = files[name]
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise PackageError(f"codec package {path}: {name} does not match its SHA-256 in the manifest")
        return cls(path, manifest, files)

    def read(self, name: str) -> bytes:
        if name not in self._files:
            raise PackageError(f"codec package {self.path} has no file {name!r}")
        return self._files[name]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def names(self) -> list[str]:
        return sorted(self._files)


def _read_member_file(directory: Path, name: str) -> bytes:
    check_name(name)
    member = directory / name
    if member.is_symlink() or not member.is_file():
        raise PackageError(f"codec package {directory}: {name} is missing or not a regular file")
    try:
        data = member.read_bytes()
    except OSError as exc:
        raise PackageError(f"cannot read {member}: {exc.strerror or exc}") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise PackageError(f"codec package {directory}: {name} is larger than {MAX_MEMBER_BYTES} bytes")
    return data


def _parse_manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"manifest.json is not valid JSON: {exc}") from None
    except RecursionError:
        raise PackageError("manifest.json is nested too deeply to be a package manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageError("manifest.json does not describe a bitmatch codec package")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PackageError(
            f"unsupported codec package format version {manifest.get('format_version')!r} "
            f"(this build reads version {FORMAT_VERSION})"
        )
    if manifest.get("precision") not in PRECISIONS:
        raise PackageError(f"unknown precision {manifest.get('precision')!r} in manifest.json")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise PackageError("manifest.json lists no files")
    for name, entry in files.items():
        check_name(name)
        if name == MANIFEST:
            raise PackageError("manifest.json may not list itself")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("size"), int)
        ):
            raise PackageError(f"manifest entry for {name} needs sha256 and size")
    digest = manifest.get("digest")
    if not isinstance(digest, str) or digest != manifest_digest(manifest):
        raise PackageError("manifest digest does not match the manifest's content")
    return manifest


def write_package(out_dir: str | Path, manifest_fields: dict, files: dict[str, bytes]) -> str:
    """Write a package directory from its files and manifest metadata; returns the digest.

    `manifest_fields` must hold `precision` and may hold anything JSON-serialisable; `format`,
    `format_version`, `files` and `digest` are filled in here.
    """
    out_dir = Path(out_dir)
    manifest = dict(manifest_fields)
    manifest.update(format=FORMAT, format_version=FORMAT_VERSION)
    manifest["files"] = {
        check_name(name): {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(files.items())
    }
    manifest.pop("digest", None)
    manifest["digest"] = manifest_digest(manifest)
    _parse_manifest(canonical_json(manifest))  # the writer obeys the reader's rules
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    (out_dir / MANIFEST).write_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n")
    return manifest["digest"]


def write_archive(package_dir: str | Path, out_path: str | Path) -> str:
    """Write a verified package directory as a deterministic tar archive; returns the package digest."""
    package = CodecPackage.load(package_dir)
    Path(out_path).write_bytes(archive_bytes(package))
    return package.digest


def archive_bytes(package: CodecPackage) -> bytes:
    """The package as a deterministic tar archive (manifest first, then the files in sorted order)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        manifest = json.dumps(package.manifest, indent=1, sort_keys=True).encode() + b"\n"
        for name, data in [(MANIFEST, manifest)] + [(n, package.read(n)) for n in package.names()]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_archive(data: bytes) -> dict[str, bytes]:
    """Members of a package archive, refusing anything that is not a plain, small, unique regular file."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise PackageError(f"codec package archive is larger than {MAX_ARCHIVE_BYTES} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_ARCHIVE_MEMBERS:
                    raise PackageError(f"codec package archive has more than {MAX_ARCHIVE_MEMBERS} members")
                name = _archive_member_name(member)
                if name in files:
                    raise PackageError(f"codec package archive holds {name!r} twice")
                if member.size > MAX_MEMBER_BYTES:
                    raise PackageError(f"archive member {name!r} is larger than {MAX_MEMBER_BYTES} bytes")
                stream = tar.extractfile(member)
                files[name] = stream.read() if stream is not None else b""
    except tarfile.TarError as exc:
        raise PackageError(f"codec package archive is not a valid tar file: {exc}") from None
    return files


def _archive_member_name(member: tarfile.TarInfo) -> str:
    if member.issparse():  # a few kilobytes of map can stand for gigabytes of zeros
        raise PackageError(f"refusing archive member {member.name!r}: it is a sparse file")
    if not member.isreg():
        kind = "link" if member.issym() or member.islnk() else "non-regular file"
        raise PackageError(f"refusing archive member {member.name!r}: it is a {kind}")
    if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
        raise PackageError(f"refusing archive member {member.name!r}: its path leaves the package")
    return check_name(member.name)


def extract_archive(data: bytes, dest_dir: str | Path, expected_digest: str | None = None) -> CodecPackage:
    """Verify an archive held in memory, then write it out as a package directory at `dest_dir`."""
    package = CodecPackage.from_files(Path(dest_dir), _read_archive(data))
    if expected_digest is not None and package.digest != expected_digest:
        raise PackageError(f"codec package digest is {package.digest}, expected {expected_digest}")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in [*package.names(), MANIFEST]:
        if (dest / name).is_symlink():
            raise PackageError(f"refusing to write through the symbolic link {dest / name}")
    for name in package.names():
        (dest / name).write_bytes(package.read(name))
    (dest / MANIFEST).write_bytes(json.dumps(package.manifest, indent=1, sort_keys=True).encode() + b"\n")
    return CodecPackage.load(dest)
