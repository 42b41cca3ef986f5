"""The codec API: round trips, cross-runtime decoding, typed errors, package building."""

import struct
import zlib

import numpy as np
import pytest

from codec import networks
from codec.build import build_random, load_weights
from codec.codec import Codec
from codec.errors import BitstreamError, ImageError, PackageError, WrongCodec
from codec.images import decode_png, encode_png, load_png
from codec.package import CodecPackage, write_archive
from codec.stages import LATENT_STAGES, PARSE_STAGES, STAGES

N, M, SEED = 4, 6, 11


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    return {
        precision: root / precision
        for precision in ("int16", "int8", "float")
        if build_random(root / precision, precision, N, M, SEED)
    }


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    size = max(height, width, 16)
    return np.ascontiguousarray(networks.synthetic_images(seed, 1, size)[0][:height, :width])


@pytest.mark.parametrize("precision", ["int16", "int8"])
@pytest.mark.parametrize("decoder_runtime", ["ort-cpu-1t", "onnx-ref"])
def test_decode_on_another_runtime_gives_identical_stage_hashes(packages, precision, decoder_runtime):
    image = _image(40, 72, seed=3)
    encoded = Codec.load(packages[precision], "ort-cpu").encode(image)
    decoded = Codec.load(packages[precision], decoder_runtime).decode(encoded.bitstream)
    for stage in PARSE_STAGES + LATENT_STAGES:
        assert decoded.stage_hashes[stage] == encoded.stage_hashes[stage], stage
    assert decoded.recon.shape == image.shape


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (64, 64), (33, 65), (1, 130), (127, 3)])
@pytest.mark.parametrize("precision", ["int16", "float"])
def test_round_trip_for_any_size(packages, precision, size):
    codec = Codec.load(packages[precision], "ort-cpu-1t")
    image = _image(*size, seed=sum(size))
    encoded = codec.encode(image)
    decoded = codec.decode(encoded.bitstream)
    assert decoded.stage_hashes == encoded.stage_hashes
    assert decoded.recon.shape == image.shape and decoded.recon.dtype == np.uint8
    assert np.array_equal(decoded.recon, encoded.recon)
    assert tuple(encoded.stage_hashes) == STAGES
    assert encoded.bpp == pytest.approx(8 * len(encoded.bitstream) / (size[0] * size[1]))
    assert encoded.timings["total"] >= 0


def test_encode_result_is_consistent(packages):
    codec = Codec.load(packages["int16"])
    image = _image(64, 64, seed=5)
    result = codec.encode(image)
    assert codec.precision == "int16" and len(codec.digest) == 64
    assert result.scale_index.shape == (1, M, 4, 4)
    assert result.scale_index.min() >= 0 and result.scale_index.max() < 64
    assert 0 < result.psnr < 100
    assert codec.encode(image).bitstream == result.bitstream  # deterministic on one runtime


@pytest.mark.parametrize("precision", ["int16", "float"])
def test_encode_without_reconstruction_codes_the_same_stream(packages, precision):
    codec = Codec.load(packages[precision], "ort-cpu-1t")
    image = _image(40, 72, seed=7)
    full, pure = codec.encode(image), codec.encode(image, reconstruct=False)
    assert pure.bitstream == full.bitstream and pure.bpp == full.bpp
    assert pure.recon is None and pure.psnr is None and "synthesis" not in pure.timings
    assert tuple(pure.stage_hashes) == PARSE_STAGES + LATENT_STAGES  # no recon hash, not a fake one
    assert pure.stage_hashes == {stage: full.stage_hashes[stage] for stage in pure.stage_hashes}
    np.testing.assert_array_equal(pure.scale_index, full.scale_index)
    np.testing.assert_array_equal(pure.y, full.y)


def test_decoding_a_pure_encode_gives_the_encoders_reconstruction(packages):
    codec = Codec.load(packages["int16"], "ort-cpu-1t")
    image = _image(33, 65, seed=8)
    decoded = codec.decode(codec.encode(image, reconstruct=False).bitstream)
    full = codec.encode(image)
    assert decoded.stage_hashes == full.stage_hashes
    np.testing.assert_array_equal(decoded.recon, full.recon)


def test_random_codec_spreads_its_scale_levels_and_codes_sanely(packages):
    result = Codec.load(packages["int16"]).encode(_image(128, 128, seed=2))
    assert len(np.unique(result.scale_index)) >= 8
    # latents of std ~4 cost ~4-5 bits each
    assert len(result.bitstream) * 8 / result.latents.y_hat.size < 8.0


def test_bitstream_for_another_package_is_refused(packages):
    encoded = Codec.load(packages["int16"]).encode(_image(8, 8))
    with pytest.raises(WrongCodec):
        Codec.load(packages["int8"]).decode(encoded.bitstream)


def test_damaged_bitstream_is_a_typed_error(packages):
    codec = Codec.load(packages["int16"])
    data = bytearray(codec.encode(_image(32, 32)).bitstream)
    with pytest.raises(BitstreamError):
        codec.decode(bytes(data[:-7]))
    data[60] ^= 0x40
    with pytest.raises(BitstreamError):
        codec.decode(bytes(data))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8), np.uint8), "RGB"),
        (np.zeros((8, 8, 4), np.uint8), "RGB"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((0, 8, 3), np.uint8), "zero size"),
        (np.zeros((8, 0, 3), np.uint8), "zero size"),
        (np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8192, 8192, 3)), "padded pixels"),
        (np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (1, 65536, 3)), "aspect ratio"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_are_typed_errors(packages, image, message):
    with pytest.raises(ImageError, match=message):
        Codec.load(packages["int16"]).encode(image)


def _png(
    width: int, height: int, mode_byte: int, bit_depth: int = 8, rows: list[bytes] | None = None
) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, mode_byte, 0, 0, 0)
    pixels = zlib.compress(b"".join(rows or []))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    pixels = zlib.compress(b"".join(rows or []))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_png_validation(tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(grey)
    with pytest.raises(ImageError, match="mode is L"):
        load_png(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(rgba)
    with pytest.raises(ImageError, match="mode is RGBA"):
        load_png(rgba)
    with pytest.raises(ImageError, match="16 bits"):
        decode_png(_png(2, 2, 2, bit_depth=16, rows=[b"\x00" + b"\x12\x34" * 6] * 2))
    with pytest.raises(ImageError, match="padded pixels"):
        decode_png(_png(8192, 8192, 2))  # header only: refused before any pixel is decoded
    with pytest.raises(ImageError, match="cannot read"):
        decode_png(b"definitely not a png")
    with pytest.raises(ImageError, match="cannot read"):
        load_png(tmp_path / "missing.png")
    image = _image(5, 7)
    assert np.array_equal(decode_png(encode_png(image)), image)


def test_build_is_deterministic_and_precisions_share_weights(packages, tmp_path):
    again = build_random(tmp_path / "again", "int16", N, M, SEED)
    assert again == CodecPackage.load(packages["int16"]).digest
    weights = [load_weights(CodecPackage.load(packages[p])) for p in ("int16", "int8", "float")]
    assert all(np.array_equal(weights[0][k], other[k]) for other in weights[1:] for k in weights[0])
    manifest = CodecPackage.load(packages["int8"]).manifest
    assert manifest["N"] == 64 and manifest["sigma_range"] == [0.11, 256.0]
    assert manifest["architecture"]["n"] == N and manifest["architecture"]["m"] == M
    assert set(manifest["files"]) >= {
        "analysis.onnx",
        "synthesis.onnx",
        "hyper_synthesis.onnx",
        "level_tables.npz",
        "z_tables.npz",
        "certificate.json",
        "weights.npz",
    }


def test_certificates(packages):
    import json

    int16 = json.loads(CodecPackage.load(packages["int16"]).read("certificate.json"))
    float_twin = json.loads(CodecPackage.load(packages["float"]).read("certificate.json"))
    assert int16 and float_twin is None


def test_archive_package_decodes_like_the_directory(packages, tmp_path):
    archive = tmp_path / "codec.bmpkg"
    digest = write_archive(packages["int16"], archive)
    from_archive = Codec.load(archive, "ort-cpu-1t")
    assert from_archive.digest == digest
    encoded = from_archive.encode(_image(20, 20))
    decoded = Codec.load(packages["int16"], "ort-cpu").decode(encoded.bitstream)
    assert decoded.stage_hashes["y_hat"] == encoded.stage_hashes["y_hat"]


def test_tampered_package_does_not_load(packages, tmp_path):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(packages["int16"], copy)
    data = bytearray((copy / "hyper_synthesis.onnx").read_bytes())
    data[-1] ^= 1
    (copy / "hyper_synthesis.onnx").write_bytes(bytes(data))
    with pytest.raises(PackageError):
        Codec.load(copy)


def test_factorized_tables_code_laplace_latents_near_their_entropy():
    from codec import rans
    from codec.build import factorized_z_tables

    rng = np.random.default_rng(4)
    scales = np.array([0.3, 1.0, 3.0])
    z_hat = np.rint(
        rng.laplace(0.0, scales[None, :, None, None], (8, 3, 16, 16))
        + np.array([0, 2, -5])[None, :, None, None]
    )
    tables = factorized_z_tables(z_hat)
    indexes = np.broadcast_to(np.arange(3, dtype=np.int32)[None, :, None, None], z_hat.shape)
    values = z_hat.astype(np.int32)
    data = rans.encode(values, indexes, tables)
    assert np.array_equal(rans.decode(data, indexes, tables), values)
    entropy = 0.0
    for channel in range(3):
        _, counts = np.unique(values[:, channel], return_counts=True)
        p = counts / counts.sum()
        entropy -= float((counts * np.log2(p)).sum())
    assert len(data) * 8 < 1.1 * entropy + 64 * 8


def test_gdn_package_without_weights_round_trips_exactly_across_runtimes(tmp_path):
    from codec.build import build_package

    arch = networks.Architecture(n=N, m=M, levels=16, transform="gdn")
    weights = networks.random_weights(arch, SEED)
    build_package(tmp_path / "int16", "int16", arch, weights, calibration_seed=SEED, store_weights=False)
    package = CodecPackage.load(tmp_path / "int16")
    assert "weights.npz" not in package.manifest["files"]
    assert package.manifest["architecture"]["transform"] == "gdn"
    with pytest.raises(PackageError, match=r"without weights\.npz"):
        load_weights(package)
    image = _image(33, 47, seed=5)
    encoded = Codec.load(tmp_path / "int16", "ort-cpu").encode(image)
    decoded = Codec.load(tmp_path / "int16", "onnx-ref").decode(encoded.bitstream)
    assert decoded.stage_hashes["y_hat"] == encoded.stage_hashes["y_hat"]
    assert decoded.recon.shape == image.shape


def test_large_images_run_on_sessions_that_give_memory_back_with_the_same_results(packages, monkeypatch):
    import codec.family as family_module

    image = _image(576, 1024)  # 589,824 padded pixels: over RETAIN_MEMORY_PIXELS
    codec = Codec.load(packages["int16"])
    small = codec.encode(_image(64, 64))
    assert codec._lean == {} and small.recon is not None
    lean = codec.encode(image)
    lean_decoded = codec.decode(lean.bitstream)
    assert sorted(codec._lean) == ["analysis.onnx", "synthesis.onnx"]
    assert not any(session.retain_memory for session in codec._lean.values())

    monkeypatch.setattr(family_module, "RETAIN_MEMORY_PIXELS", 1 << 30)
    retaining = Codec.load(packages["int16"])
    kept = retaining.encode(image)
    assert retaining._lean == {}
    assert kept.bitstream == lean.bitstream and kept.stage_hashes == lean.stage_hashes
    assert retaining.decode(kept.bitstream).stage_hashes == lean_decoded.stage_hashes
