"""The codec API: load a package, encode an RGB image into a `.bmc` bitstream, decode it back.

Encoder (docs/architecture.md, "Entropy path"):

    x (uint8, padded to a multiple of 64) --analysis--> y, z (float32)
    z_hat = round(z) (int32)                      rANS with the per-channel factorized tables  -> section "z"
    (scale_index, mean) = h_s(z_hat) (int32)      mean in units of 2^-m, m = architecture mean_bits
    sym = round(y - mean * 2^-m) (float64)        rANS with Gaussian level table scale_index   -> section "y"
    y_hat = sym * 2^m + mean (int32)  --> y_hat * 2^-m (float32) --synthesis--> recon (uint8, cropped)

The decoder reads z_hat, runs the same h_s, reads sym with the same table indexes and rebuilds y_hat from
integers alone, so y_hat is bit-identical wherever h_s is (the int16 and int8 packages). Only the float
networks outside the entropy path (analysis, synthesis) may differ between runtimes.
"""

import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec import bitstream, networks, rans
from codec.errors import CorruptStream, LengthFieldError, PackageError
from codec.hashing import stage_hash
from codec.images import validate_image
from codec.metrics import bpp as bits_per_pixel
from codec.metrics import psnr as psnr_db
from codec.package import CodecPackage
from codec.tables import CodeTables

STAGES = ("z_hat", "scale_index", "mean", "y_hat", "recon")
SECTIONS = ("z", "y")
ANALYSIS, SYNTHESIS, HYPER_SYNTHESIS = "analysis.onnx", "synthesis.onnx", "hyper_synthesis.onnx"
LEVEL_TABLES, Z_TABLES = "level_tables.npz", "z_tables.npz"
WEIGHTS, CERTIFICATE = "weights.npz", "certificate.json"


@dataclass
class EncodeResult:
    bitstream: bytes
    stage_hashes: dict[str, str]
    bpp: float
    psnr: float
    timings: dict[str, float]            # milliseconds per stage
    recon: np.ndarray
    scale_index: np.ndarray
    y_hat: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int32))


@dataclass
class DecodeResult:
    recon: np.ndarray
    stage_hashes: dict[str, str]
    timings: dict[str, float]
    scale_index: np.ndarray
    y_hat: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int32))


class _Clock:
    """Milliseconds spent per named stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._last) * 1e3
        self._last = now

    def total(self) -> dict[str, float]:
        self.timings["total"] = (time.perf_counter() - self._start) * 1e3
        return self.timings


class Codec:
    """A loaded codec package bound to one runtime (see codec/runtime.py for the names)."""

    def __init__(self, package: CodecPackage, runtime: str = "ort-cpu") -> None:
        from codec.runtime import get_runtime

        self.package = package
        self.digest: str = package.digest
        self.precision: str = package.manifest["precision"]
        self.runtime_name = runtime
        self.arch = networks.Architecture.from_dict(package.manifest["architecture"])
        self.level_tables = _load_tables(package, LEVEL_TABLES)
        self.z_tables = _load_tables(package, Z_TABLES)
        _check_table_counts(self.arch, self.level_tables, self.z_tables)
        backend = get_runtime(runtime)
        self._analysis = backend.session(package.read(ANALYSIS))
        self._synthesis = backend.session(package.read(SYNTHESIS))
        self._hyper = backend.session(package.read(HYPER_SYNTHESIS))

    @classmethod
    def load(cls, path: str | Path, runtime: str = "ort-cpu") -> "Codec":
        return cls(CodecPackage.load(path), runtime)

    # --- encoding ---------------------------------------------------------------------------------------

    def encode(self, image: np.ndarray) -> EncodeResult:
        """Code a uint8 HxWx3 image (1x1 up to 64 megapixels)."""
        image = validate_image(image)
        height, width = image.shape[:2]
        clock = _Clock()
        outputs = self._analysis.run({"x": networks.pad_image(image)})
        y, z = np.asarray(outputs["y"]), np.asarray(outputs["z"])
        clock.lap("analysis")
        z_hat = np.rint(np.clip(z, -(2.0**30), 2.0**30)).astype(np.int32)
        z_section = rans.encode(z_hat, self._z_indexes(z_hat.shape), self.z_tables)
        clock.lap("z_coding")
        scale_index, mean = self._hyper_synthesis(z_hat, y.shape)
        clock.lap("hyper_synthesis")
        sym = self._symbols(y, mean)
        y_section = rans.encode(sym, scale_index, self.level_tables)
        y_hat = self._y_hat(sym, mean)
        clock.lap("y_coding")
        recon = self._synthesise(y_hat, height, width)
        clock.lap("synthesis")
        sections = {"z": z_section, "y": y_section}
        data = bitstream.pack(bitstream.Bitstream(self.digest, height, width, sections))
        return EncodeResult(
            bitstream=data,
            stage_hashes=_stage_hashes(z_hat, scale_index, mean, y_hat, recon),
            bpp=bits_per_pixel(len(data), height, width),
            psnr=psnr_db(image, recon),
            timings=clock.total(),
            recon=recon,
            scale_index=scale_index,
            y_hat=y_hat,
        )

    def _symbols(self, y: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """sym = round(y - mean 2^-m) in float64, kept inside the range where y_hat stays an int32."""
        limit = float(2 ** (30 - self.arch.mean_bits))
        residual = y.astype(np.float64) - mean.astype(np.float64) * 2.0**-self.arch.mean_bits
        return np.rint(np.clip(residual, -limit, limit)).astype(np.int32)

    # --- decoding ---------------------------------------------------------------------------------------

    def decode(self, data: bytes) -> DecodeResult:
        """Decode a `.bmc` bitstream made by this package (typed BitstreamError subclasses otherwise)."""
        clock = _Clock()
        parsed = bitstream.unpack(data, expected_digest=self.digest)
        if tuple(parsed.sections) != SECTIONS:
            raise LengthFieldError(f"bitstream sections are {list(parsed.sections)}, not {list(SECTIONS)}")
        height, width = parsed.height, parsed.width
        lat_h, lat_w = networks.latent_shape(height, width)
        z_shape = (1, self.arch.n, lat_h // 4, lat_w // 4)
        z_hat = rans.decode(parsed.sections["z"], self._z_indexes(z_shape), self.z_tables)
        clock.lap("z_coding")
        scale_index, mean = self._hyper_synthesis(z_hat, (1, self.arch.m, lat_h, lat_w))
        clock.lap("hyper_synthesis")
        sym = rans.decode(parsed.sections["y"], scale_index, self.level_tables)
        y_hat = self._y_hat(sym, mean)
        clock.lap("y_coding")
        recon = self._synthesise(y_hat, height, width)
        clock.lap("synthesis")
        return DecodeResult(
            recon=recon,
            stage_hashes=_stage_hashes(z_hat, scale_index, mean, y_hat, recon),
            timings=clock.total(),
            scale_index=scale_index,
            y_hat=y_hat,
        )

    # --- shared steps -----------------------------------------------------------------------------------

    def _z_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        channels = np.arange(self.arch.n, dtype=np.int32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray(np.broadcast_to(channels, shape))

    def _hyper_synthesis(self, z_hat: np.ndarray, y_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._hyper.run({"z_hat": np.ascontiguousarray(z_hat, dtype=np.int32)})
        scale_index = np.ascontiguousarray(outputs["scale_index"], dtype=np.int32)
        mean = np.ascontiguousarray(outputs["mean"], dtype=np.int32)
        if scale_index.shape != tuple(y_shape) or mean.shape != tuple(y_shape):
            raise PackageError(f"h_s produced {scale_index.shape} / {mean.shape}, expected {y_shape}")
        return scale_index, mean

    def _y_hat(self, sym: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """y_hat = sym 2^m + mean in int64, refused if it leaves int32 (only a damaged stream gets there)."""
        fixed = sym.astype(np.int64) * (1 << self.arch.mean_bits) + mean.astype(np.int64)
        if fixed.size and (fixed.min() < -(2**31) or fixed.max() > 2**31 - 1):
            raise CorruptStream("decoded latent leaves the int32 range: the stream is damaged")
        return fixed.astype(np.int32)

    def _synthesise(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        y_float = (y_hat.astype(np.float64) * 2.0**-self.arch.mean_bits).astype(np.float32)
        x_hat = np.asarray(self._synthesis.run({"y_hat": y_float})["x_hat"])
        return networks.to_uint8_image(x_hat, height, width)


def _stage_hashes(z_hat, scale_index, mean, y_hat, recon) -> dict[str, str]:
    arrays = {"z_hat": z_hat, "scale_index": scale_index, "mean": mean, "y_hat": y_hat, "recon": recon}
    return {name: stage_hash(arrays[name]) for name in STAGES}


def _load_tables(package: CodecPackage, name: str) -> CodeTables:
    return CodeTables.load_npz(io.BytesIO(package.read(name)))


def _check_table_counts(arch: networks.Architecture, level_tables: CodeTables, z_tables: CodeTables) -> None:
    if level_tables.num_tables != arch.levels:
        raise PackageError(f"{LEVEL_TABLES} has {level_tables.num_tables} tables for {arch.levels} levels")
    if z_tables.num_tables != arch.n:
        raise PackageError(f"{Z_TABLES} has {z_tables.num_tables} tables for {arch.n} channels of z")


# --- building packages ---

CALIBRATION_IMAGES = 6
CALIBRATION_SIZE = 256
_Z_TAIL = 8.0          # factorized tables cover the channel's Laplace fit to +-8 scales before escaping
_Z_MIN_SCALE = 0.25


def calibration_latents(arch: networks.Architecture, weights: dict[str, np.ndarray], seed: int,
                        images: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) of the calibration images, each [1, C, h, w] array per image concatenated on the batch axis.

    By default the images are the deterministic synthetic ones of `seed`; given `images` must share one size.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(networks.analysis_model(arch, weights), options,
                                   providers=["CPUExecutionProvider"])
    ys, zs = [], []
    if images is None:
        images = networks.synthetic_images(seed, CALIBRATION_IMAGES, CALIBRATION_SIZE)
    for image in images:
        y, z = session.run(["y", "z"], {"x": networks.pad_image(image)})
        ys.append(y)
        zs.append(z)
    return np.concatenate(ys), np.concatenate(zs)


def factorized_z_tables(z: np.ndarray) -> CodeTables:
    """Per-channel discretised Laplace tables for z_hat, fitted to calibration z_hat [B, N, h, w]."""
    from codec.tables import tables_from_pmfs

    pmfs, offsets = [], []
    for channel in np.moveaxis(np.asarray(z, np.float64), 1, 0).reshape(z.shape[1], -1):
        centre = float(np.median(channel))
        spread = max(float(np.mean(np.abs(channel - centre))), _Z_MIN_SCALE)
        radius = max(2, int(np.ceil(_Z_TAIL * spread)))
        offset = int(np.rint(centre)) - radius
        pmfs.append(_laplace_code_vector(centre, spread, offset, 2 * radius + 1))
        offsets.append(offset)
    return tables_from_pmfs(pmfs, offsets)


def _laplace_code_vector(centre: float, spread: float, offset: int, length: int) -> np.ndarray:
    """Masses of the escape / value / escape symbols of one table (layout of docs/architecture.md)."""
    edges = offset + 0.5 + np.arange(length - 1)          # boundaries between consecutive symbols
    t = (edges - centre) / spread
    cdf = np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1 - 0.5 * np.exp(-np.maximum(t, 0)))
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def _tables_npz(tables: CodeTables) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tables.npz"
        tables.save_npz(path)
        return path.read_bytes()


def _weights_npz(weights: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: weights[name] for name in sorted(weights)})
    return buffer.getvalue()


def load_weights(package: CodecPackage) -> dict[str, np.ndarray]:
    """The float weights stored in a package (for re-integerisation)."""
    if WEIGHTS not in package.manifest["files"]:
        raise PackageError(f"package {package.digest[:12]} was built without {WEIGHTS}; "
                           "its float twin of the same rate point carries them")
    with np.load(io.BytesIO(package.read(WEIGHTS)), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def build_package(out_dir: str | Path, precision: str, arch: networks.Architecture,
                  weights: dict[str, np.ndarray], calibration_seed: int = 0,
                  z_tables: CodeTables | None = None, metadata: dict | None = None,
                  calibration_images: list[np.ndarray] | None = None, store_weights: bool = True) -> str:
    """Build a codec package directory from float weights; returns its digest.

    `z_tables` are the factorized tables of z (a trained package supplies its learned pmfs); by default they
    are fitted to the calibration latents. int16/int8 h_s are integerised on the same calibration latents
    (synthetic images of `calibration_seed` unless `calibration_images`, all of one size, are given).
    `store_weights=False` leaves out the float weights file (the graphs do not need it), so packages of
    several precisions built from one set of weights can keep a single copy.
    """
    from codec.package import PRECISIONS, write_package

    if precision not in PRECISIONS:
        raise PackageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    networks.check_weights(arch, weights)
    _, z = calibration_latents(arch, weights, calibration_seed, calibration_images)
    z_hat = np.rint(z)      # tables and h_s integerisation see only the integers the codec will code
    if z_tables is None:
        z_tables = factorized_z_tables(z_hat)
    level_tables, _ = _level_tables(arch)
    hyper_model, certificate = build_hyper_synthesis(precision, arch, weights, z_hat)
    files = {
        ANALYSIS: networks.analysis_model(arch, weights),
        SYNTHESIS: networks.synthesis_model(arch, weights),
        HYPER_SYNTHESIS: hyper_model,
        LEVEL_TABLES: _tables_npz(level_tables),
        Z_TABLES: _tables_npz(z_tables),
        CERTIFICATE: _canonical_json(certificate),
    }
    if store_weights:
        files[WEIGHTS] = _weights_npz(weights)
    manifest = {
        "precision": precision,
        "N": arch.levels,
        "sigma_range": [arch.sigma_min, arch.sigma_max],
        "architecture": arch.to_dict(),
        "calibration_seed": calibration_seed,
        "level_tables_sha256": level_tables.sha256,
        "z_tables_sha256": z_tables.sha256,
        **(metadata or {}),
    }
    return write_package(out_dir, manifest, files)


def build_random(out_dir: str | Path, precision: str, n: int, m: int, seed: int, levels: int = 64) -> str:
    """A package with deterministic random weights; every precision built from one seed shares weights."""
    arch = networks.Architecture(n=n, m=m, levels=levels)
    weights = networks.random_weights(arch, seed)
    return build_package(out_dir, precision, arch, weights, calibration_seed=seed,
                         metadata={"weights": "random", "seed": seed})


def _level_tables(arch: networks.Architecture) -> tuple[CodeTables, np.ndarray]:
    from codec.tables import gaussian_level_tables

    return gaussian_level_tables(arch.levels, arch.sigma_min, arch.sigma_max)


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"


def evaluate_directory(codec: Codec, image_dir: str | Path) -> dict:
    """Encode every PNG of a directory (sorted by name): bpp, PSNR, PSNR-Y, MS-SSIM per image and mean."""
    from codec.errors import ImageError
    from codec.images import load_png
    from codec.metrics import ms_ssim, psnr_y

    paths = sorted(Path(image_dir).glob("*.png"))
    if not paths:
        raise ImageError(f"no PNG images in {image_dir}")
    rows = []
    for path in paths:
        image = load_png(path)
        result = codec.encode(image)
        rows.append({"image": path.name, "height": image.shape[0], "width": image.shape[1],
                     "bpp": result.bpp, "psnr": result.psnr, "psnr_y": psnr_y(image, result.recon),
                     "ms_ssim": ms_ssim(image, result.recon), "stage_hashes": result.stage_hashes})
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("bpp", "psnr", "psnr_y", "ms_ssim")}
    return {"codec": codec.digest, "precision": codec.precision, "runtime": codec.runtime_name,
            "images": rows, "mean": mean}


def build_hyper_synthesis(precision: str, arch: networks.Architecture, weights: dict[str, np.ndarray],
                          calibration_z_hat: np.ndarray) -> tuple[bytes, dict | None]:
    """h_s as ONNX in the given precision, and its overflow certificate (None for the float twin)."""
    from codec.hyper import build_hs_onnx
    from codec.intnet import integerize_hs

    layers = networks.hyper_synthesis_layers(arch, weights)
    if precision == "float":
        return build_hs_onnx("float", layers=layers, levels=arch.levels, mean_bits=arch.mean_bits), None
    int_hs = integerize_hs(layers, calibration_z_hat, precision, arch.levels, arch.mean_bits)
    model = build_hs_onnx(precision, int_hs=int_hs, levels=arch.levels, mean_bits=arch.mean_bits)
    return model, int_hs.certificate
