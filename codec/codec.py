"""The codec API: load a package, encode an RGB image into a `.bmc` bitstream, decode it back.

Encoder (docs/architecture.md, "Entropy path"):

    x (uint8, padded to a multiple of 64) --analysis--> y, z (float32)
    z symbols = round(z - median)          rANS with the per-channel z tables             -> section "z"
    z_hat = symbols + median               (codec/entropy.py: fixed point, or float32)
    (scale_index, mean) = h_s(z_hat)       scale_index int32; mean fixed point or float32
    symbols = round(y - mean)              rANS with the y table of each scale index      -> section "y"
    y_hat = symbols + mean  --> g_s --> recon (uint8, cropped)

The decoder reads the z symbols, rebuilds z_hat, runs the same h_s, reads the y symbols with the same table
indexes and rebuilds y_hat. For packages with a fixed-point latent (our own codec in every precision, and the
integer packages of imported codecs) everything after the parse is integer arithmetic, so y_hat is
bit-identical wherever h_s is. Only the float networks outside the entropy path (analysis, synthesis), and in
the float packages of imported codecs also h_s and the float means, may differ between runtimes.
"""

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec import bitstream, networks, rans
from codec.entropy import ConditionalY, FactorizedZ, LatentFormat
from codec.errors import LengthFieldError, PackageError
from codec.family import FamilyCodec
from codec.images import validate_image
from codec.limits import size_problem
from codec.lowcx import LowComplexityCodec
from codec.metrics import bpp as bits_per_pixel
from codec.metrics import psnr as psnr_db
from codec.package import (
    ANALYSIS,
    HYPER_SYNTHESIS,
    LEVEL_TABLES,
    SYNTHESIS,
    Z_TABLES,
    CodecPackage,
)
from codec.progress import SILENT, Progress
from codec.results import DecodeResult, EncodeResult, Latents, StageClock
from codec.runtime import Session, get_runtime
from codec.tables import CodeTables
from codec.vocabulary import Precision

if TYPE_CHECKING:
    from codec.rdoq import RdoqOptions

SECTIONS = ("z", "y")


def latent_format(manifest: dict) -> LatentFormat:
    """The package's latent format; packages without an `entropy` section are our own fixed-point codec."""
    entropy = manifest.get("entropy")
    if entropy is None:
        return LatentFormat(mean_bits=int(manifest["architecture"].get("mean_bits", 8)))
    return LatentFormat.from_json(entropy)


class Codec(FamilyCodec):
    """A loaded hyperprior package bound to one runtime (see codec/runtime.py for the names)."""

    def __init__(self, package: CodecPackage, runtime: str = "ort-cpu") -> None:
        self.package = package
        self.digest: str = package.digest
        self.precision: str = package.manifest["precision"]
        self._integer_synthesis = Precision(self.precision).integer_synthesis
        self.runtime_name = runtime
        manifest = package.manifest
        self.format = latent_format(manifest)
        medians = manifest.get("entropy", {}).get("z_medians")
        self.z_model = FactorizedZ(_load_tables(package, Z_TABLES), self.format, medians)
        self.y_model = ConditionalY(_load_tables(package, LEVEL_TABLES), self.format)
        self.z_channels, self.y_channels = _channels(manifest, self.z_model, self.y_model)
        self._backend = get_runtime(runtime)
        self._analysis = self._backend.session(package.read(ANALYSIS), retain_memory=True)
        self._synthesis = self._backend.session(package.read(SYNTHESIS), retain_memory=True)
        self._hyper = self._backend.session(package.read(HYPER_SYNTHESIS), retain_memory=True)
        self._lean: dict[str, Session] = {}  # g_a and g_s for large images, made on first use
        self._hyper_raw = None  # the instrumented h_s of hyper_raw, made on first use
        self._batched_synthesis: Session | None = None

    @classmethod
    def load(cls, path: str | Path, runtime: str = "ort-cpu") -> FamilyCodec:
        """The package at `path` as the codec of its family (codec/lowcx.py for `lowcomplexity`)."""
        package = CodecPackage.load(path)
        if package.manifest.get("architecture", {}).get("family") == networks.LOWCOMPLEXITY:
            return LowComplexityCodec(package, runtime)
        return cls(package, runtime)

    # --- encoding ---------------------------------------------------------------------------------------

    def encode(
        self, image: np.ndarray, reconstruct: bool = True, rdoq: "RdoqOptions | None" = None
    ) -> EncodeResult:
        """Code a uint8 HxWx3 image (1x1 up to 64 megapixels). `reconstruct`: also run g_s on y_hat, for the
        reconstruction, its PSNR and its stage hash (verdicts and RD points need them; the bitstream and the
        other stage hashes are the same either way). `rdoq`: optimise the y symbols (codec/rdoq.py) before
        coding them; RdoqUnsupported for a package whose decoder is not exact."""
        image = validate_image(image)
        if rdoq is not None:
            from codec.rdoq import require_exact

            require_exact(self.precision, self.format.kind)
        height, width = image.shape[:2]
        clock = StageClock()
        analysis = self._network(ANALYSIS, self._analysis, height, width)
        outputs = analysis.run({"x": networks.pad_image(image)})
        y, z = np.asarray(outputs["y"]), np.asarray(outputs["z"])
        clock.lap("analysis")
        z_symbols = self.z_model.symbols(z)
        z_section = rans.encode(z_symbols, self.z_model.indexes(z_symbols.shape), self.z_model.tables)
        z_hat = self.z_model.dequantize(z_symbols)
        clock.lap("z_coding")
        scale_index, mean = self._hyper_synthesis(z_hat, y.shape)
        clock.lap("hyper_synthesis")
        symbols = self.y_model.symbols(y, mean)
        rdoq_stats = None
        if rdoq is not None:
            from codec.rdoq import optimise_hyperprior

            symbols, rdoq_stats = optimise_hyperprior(self, image, symbols, scale_index, mean, rdoq)
            clock.lap("rdoq")
        y_section = rans.encode(symbols, scale_index, self.y_model.tables)
        latents = Latents(z_hat, scale_index, symbols, mean, self.y_model.dequantize(symbols, mean))
        clock.lap("y_coding")
        recon = None
        if reconstruct:
            recon = self._synthesise(latents.y_hat, height, width)
            clock.lap("synthesis")
        data = bitstream.pack(
            bitstream.Bitstream(self.digest, height, width, {"z": z_section, "y": y_section})
        )
        return EncodeResult(
            bitstream=data,
            stage_hashes=latents.hashes(recon),
            bpp=bits_per_pixel(len(data), height, width),
            psnr=None if recon is None else psnr_db(image, recon),
            timings=clock.total(),
            recon=recon,
            scale_index=scale_index,
            latents=latents,
            y_hat_real=self.y_model.real(latents.y_hat),
            y=y,
            rdoq=rdoq_stats,
        )

    def batched_synthesis(self) -> Session:
        """g_s with a free batch dimension (RDOQ's crops), made on first use."""
        if self._batched_synthesis is None and self._integer_synthesis:  # its graph's batch is 1
            from codec.rdoq_lowcx import integer_synthesis_session

            self._batched_synthesis = integer_synthesis_session(self._backend, self.package.read(SYNTHESIS))
        if self._batched_synthesis is None:
            from codec.rdoq import batched_synthesis

            model = batched_synthesis(self.package.read(SYNTHESIS))
            self._batched_synthesis = self._backend.session(model, retain_memory=True)
        return self._batched_synthesis

    # --- decoding ---------------------------------------------------------------------------------------

    def decode(self, data: bytes, allow_foreign: bool = False) -> DecodeResult:
        """Decode a `.bmc` bitstream made by this package (typed BitstreamError subclasses otherwise).
        `allow_foreign`: also one another package wrote (codec-version compatibility checks); its digest
        is then `DecodeResult.bitstream_codec`."""
        clock = StageClock()
        parsed, z_hat, scale_index, mean = self._parse_hyper(data, clock, allow_foreign)
        symbols = rans.decode(parsed.sections["y"], scale_index, self.y_model.tables)
        latents = Latents(z_hat, scale_index, symbols, mean, self.y_model.dequantize(symbols, mean))
        clock.lap("y_coding")
        recon = self._synthesise(latents.y_hat, parsed.height, parsed.width)
        clock.lap("synthesis")
        return DecodeResult(
            recon=recon,
            stage_hashes=latents.hashes(recon),
            timings=clock.total(),
            scale_index=scale_index,
            latents=latents,
            y_hat_real=self.y_model.real(latents.y_hat),
            bitstream_codec=parsed.codec_digest,
        )

    def decode_hyper(
        self, data: bytes, allow_foreign: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z_hat, scale_index, mean) of a bitstream, without reading its y section (forensics: a desynced
        decoder's scale indexes, even when its y section then fails)."""
        _, z_hat, scale_index, mean = self._parse_hyper(data, StageClock(), allow_foreign)
        return z_hat, scale_index, mean

    def _parse_hyper(
        self, data: bytes, clock: StageClock, allow_foreign: bool = False
    ) -> tuple[bitstream.Bitstream, np.ndarray, np.ndarray, np.ndarray]:
        parsed = bitstream.unpack(data, expected_digest=None if allow_foreign else self.digest)
        problem = size_problem(parsed.height, parsed.width)  # what the header declares, decoding costs
        if problem is not None:
            raise LengthFieldError(f"the bitstream declares an image the decoder refuses: {problem}")
        if tuple(parsed.sections) != SECTIONS:
            raise LengthFieldError(f"bitstream sections are {list(parsed.sections)}, not {list(SECTIONS)}")
        lat_h, lat_w = networks.latent_shape(parsed.height, parsed.width)
        z_shape = (1, self.z_channels, lat_h // 4, lat_w // 4)
        z_symbols = rans.decode(parsed.sections["z"], self.z_model.indexes(z_shape), self.z_model.tables)
        z_hat = self.z_model.dequantize(z_symbols)
        clock.lap("z_coding")
        scale_index, mean = self._hyper_synthesis(z_hat, (1, self.y_channels, lat_h, lat_w))
        clock.lap("hyper_synthesis")
        return parsed, z_hat, scale_index, mean

    def hyper_raw(self, z_hat: np.ndarray) -> np.ndarray | None:
        """The float h_s output before its head rounds it (forensics: drift and margins), or None for an
        integer package, whose h_s is exact. Computed by a second session of the same graph with that tensor
        as an extra output (codec/hyper.py `with_raw_output`), so the coded path keeps the package's graph
        untouched; the coordinator checks that these values explain the decisions the coded path took."""
        if self.precision != Precision.FLOAT:
            return None
        from codec.hyper import RAW_NAME, with_raw_output  # onnx, only when asked for (forensics)

        if self._hyper_raw is None:
            self._hyper_raw = self._backend.session(with_raw_output(self.package.read(HYPER_SYNTHESIS)))
        outputs = self._hyper_raw.run({"z_hat": np.ascontiguousarray(z_hat)})
        return np.ascontiguousarray(outputs[RAW_NAME], dtype=np.float32)

    # --- shared steps -----------------------------------------------------------------------------------

    def _hyper_synthesis(self, z_hat: np.ndarray, y_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._hyper.run({"z_hat": np.ascontiguousarray(z_hat)})
        scale_index = np.ascontiguousarray(outputs["scale_index"], dtype=np.int32)
        if "mean" in outputs:
            mean = np.ascontiguousarray(outputs["mean"], dtype=self.y_model.zero_mean((0,)).dtype)
        else:
            mean = self.y_model.zero_mean(scale_index.shape)
        if scale_index.shape != tuple(y_shape) or mean.shape != tuple(y_shape):
            raise PackageError(f"h_s produced {scale_index.shape} / {mean.shape}, expected {y_shape}")
        return scale_index, mean

    def _synthesise(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        synthesis = self._network(SYNTHESIS, self._synthesis, height, width)
        if self._integer_synthesis:  # int32 y_hat in, uint8 pixels out (codec/intsynth.py)
            pixels = np.asarray(synthesis.run({"y_hat": np.ascontiguousarray(y_hat)})["x_hat"])
            return np.ascontiguousarray(pixels[0, :, :height, :width].astype(np.uint8).transpose(1, 2, 0))
        x_hat = np.asarray(synthesis.run({"y_hat": self.y_model.real(y_hat)})["x_hat"])
        return networks.to_uint8_image(x_hat, height, width)


def _load_tables(package: CodecPackage, name: str) -> CodeTables:
    return CodeTables.load_npz(io.BytesIO(package.read(name)))


def _channels(manifest: dict, z_model: FactorizedZ, y_model: ConditionalY) -> tuple[int, int]:
    """(z channels, y channels) from the manifest, checked against the tables it ships."""
    arch = manifest["architecture"]
    levels = int(manifest["N"])
    if y_model.tables.num_tables != levels:
        raise PackageError(
            f"{LEVEL_TABLES} has {y_model.tables.num_tables} tables for {levels} scale indexes"
        )
    if z_model.channels != int(arch["n"]):
        raise PackageError(f"{Z_TABLES} has {z_model.channels} tables for {arch['n']} channels of z")
    return int(arch["n"]), int(arch["m"])


def evaluate_directory(codec: Codec, image_dir: str | Path, progress: Progress = SILENT) -> dict:
    """Encode every PNG of a directory (sorted by name): bpp, PSNR, PSNR-Y, MS-SSIM per image and mean."""
    from codec.errors import ImageError
    from codec.images import load_png
    from codec.metrics import ms_ssim, psnr_y

    paths = sorted(Path(image_dir).glob("*.png"))
    if not paths:
        raise ImageError(f"no PNG images in {image_dir}")
    progress.add_total(len(paths))
    rows = []
    for path in paths:
        image = load_png(path)
        result = codec.encode(image, reconstruct=True)
        rows.append(
            {
                "image": path.name,
                "height": image.shape[0],
                "width": image.shape[1],
                "bpp": result.bpp,
                "psnr": result.psnr,
                "psnr_y": psnr_y(image, result.recon),
                "ms_ssim": ms_ssim(image, result.recon),
                "stage_hashes": result.stage_hashes,
            }
        )
        progress.advance()
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("bpp", "psnr", "psnr_y", "ms_ssim")}
    return {
        "codec": codec.digest,
        "precision": codec.precision,
        "runtime": codec.runtime_name,
        "images": rows,
        "mean": mean,
    }
