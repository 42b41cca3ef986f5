"""The known-answer test every worker passes before it may give verdicts.

The coordinator encodes a fixed tiny image with a fixed (integer) codec package once, locally, and records the
bitstream and the entropy-path stage hashes of decoding it. A worker must (1) decode that bitstream to exactly
those hashes and (2) decode its own encoding of the image back to the hashes its encoder reported. Only the
entropy path is compared: it is exact by construction, while the float analysis and synthesis may differ
legitimately between devices.

The test always runs: without `--health-package` it uses the shipped int16 package (packages/int16/q2), or,
where packages/ is absent (an installed wheel), a seeded random int16 package built once into the data
directory. Until a device has passed it, the device is `unchecked` and gives no verdicts.
"""

import base64
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from codec.imagesets import known_answer_image
from codec.resources import ResourceMissing, shipped_package
from codec.stages import LATENT_STAGES, PARSE_STAGES
from codec.vocabulary import Precision

ENTROPY_STAGES = PARSE_STAGES + LATENT_STAGES
SHIPPED_HEALTH_PACKAGE = "int16/q2"  # under the shipped packages (codec.resources.packages_dir)
RANDOM_HEALTH_PACKAGE = "health-int16-random-n8-m8-seed0"
KNOWN_ANSWER_UNAVAILABLE = "known-answer test cannot run"  # in the health detail of the devices it leaves


@dataclass(frozen=True)
class KnownAnswer:
    codec_digest: str
    archive: bytes
    png: bytes
    bitstream: bytes
    decode_hashes: dict[str, str]  # entropy-path stages only


def health_package(configured: Path | None, cache_dir: Path) -> Path:
    """The package of the known-answer test: the configured one, else the shipped int16 package, else a
    seeded random int16 package built once into `cache_dir`."""
    if configured is not None:
        return configured
    try:
        return shipped_health_package()
    except ResourceMissing:  # an install without the trained packages (the coordinator's container)
        return _random_health_package(cache_dir)


def shipped_health_package() -> Path:
    """packages/int16/q2, wherever this install keeps the shipped packages; ResourceMissing if it has none."""
    return shipped_package(SHIPPED_HEALTH_PACKAGE)


def _random_health_package(cache_dir: Path) -> Path:
    from codec.build import build_random
    from codec.package import CodecPackage

    path = cache_dir / RANDOM_HEALTH_PACKAGE
    try:
        CodecPackage.load(path)
        return path
    except Exception:  # absent or damaged: build it again
        scratch = path.with_name(f".{path.name}.building")
        shutil.rmtree(scratch, ignore_errors=True)
        build_random(scratch, Precision.INT16, 8, 8, 0)
        shutil.rmtree(path, ignore_errors=True)
        scratch.rename(path)
        return path


def load_known_answer(package_path: Path, cache_dir: Path) -> KnownAnswer:
    """Build (or read from `cache_dir`) the known answer of a codec package directory or archive."""
    from codec.images import encode_png
    from codec.package import CodecPackage, archive_bytes

    package = CodecPackage.load(package_path)
    archive = archive_bytes(package)
    png = encode_png(known_answer_image())
    cache = _cache_path(cache_dir, package.digest)
    record = json.loads(cache.read_text()) if cache.is_file() else None
    if record is not None and set(ENTROPY_STAGES) <= set(record["decode_hashes"]):
        bitstream, hashes = base64.b64decode(record["bitstream"]), record["decode_hashes"]
    else:  # absent, or recorded before a stage was added to the entropy path
        bitstream, hashes = reference_answer(package_path)
        write_cache(cache_dir, package.digest, bitstream, hashes)
    return KnownAnswer(package.digest, archive, png, bitstream, hashes)


def _cache_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / f"known-answer-{digest}.json"


def write_cache(cache_dir: Path, digest: str, bitstream: bytes, decode_hashes: dict[str, str]) -> None:
    """Record a package's known answer (the coordinator trusts this file: it lives in its data directory)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    record = {"bitstream": base64.b64encode(bitstream).decode(), "decode_hashes": decode_hashes}
    _cache_path(cache_dir, digest).write_text(json.dumps(record))


def reference_answer(package_path: Path) -> tuple[bytes, dict[str, str]]:
    """The bitstream of the known-answer image and the entropy-path hashes of decoding it, computed here."""
    from codec.codec import Codec

    codec = Codec.load(package_path)
    encoded = codec.encode(known_answer_image())
    decoded = codec.decode(encoded.bitstream)
    return encoded.bitstream, {stage: decoded.stage_hashes[stage] for stage in ENTROPY_STAGES}


def entropy_mismatches(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [stage for stage in ENTROPY_STAGES if expected.get(stage) != actual.get(stage)]
