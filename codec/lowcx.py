"""The lowcomplexity codec family: a factorized-prior autoencoder coded with a context-switching model.

After Galpin et al., "Entropy coding improvement for low-complexity compressive auto-encoders": g_a and g_s
are four 5x5 stride-2 (transposed) convolutions with ReLU between them (codec/networks.py, family
`lowcomplexity`), there is no hyperprior, and y_hat = round(y) is coded by the post-training model of
codec/contexts.py (per-channel integer CDFs switched by eq. 3 contexts, channel activation bits, a channel
order), fitted by codec/contexts_fit.py on training latents.

    x --g_a--> y --round--> y_hat (int32) --contexts--> sections "a" (activation bits), "y" (one rANS lane)
    decoder: sections --contexts--> y_hat --g_s--> recon

The stages are `symbols` (= y_hat: the coded values), `y_hat` and `recon`; there is no z_hat, scale index
or mean. A package of the family is loaded by `Codec.load` like any other and names its family in
`architecture.family`; its manifest's `contexts` holds the model's integer parameters.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec import bitstream, contexts, networks
from codec.entropy import _rint_symbols
from codec.errors import LengthFieldError, PackageError
from codec.family import FamilyCodec
from codec.hashing import stage_hash
from codec.images import validate_image
from codec.limits import size_problem
from codec.metrics import bpp as bits_per_pixel
from codec.metrics import psnr as psnr_db
from codec.package import ANALYSIS, SYNTHESIS, CodecPackage
from codec.results import DecodeResult, EncodeResult, StageClock
from codec.runtime import get_runtime
from codec.stages import FACTORIZED_STAGES
from codec.tables import CodeTables
from codec.vocabulary import Precision, Stage

if TYPE_CHECKING:
    from codec.rdoq import RdoqOptions

Y_TABLES, ACTIVATION_TABLES = "y_tables.npz", "activation_tables.npz"


@dataclass
class FactorizedLatents:
    """The entropy path of a factorized codec: the coded values and y_hat (the same integers here)."""

    symbols: np.ndarray
    y_hat: np.ndarray
    z_hat: None = None  # a factorized codec has none of these three (the worker's forensic maps skip them)
    scale_index: None = None
    mean: None = None

    def hashes(self, recon: np.ndarray | None) -> dict[str, str]:
        arrays = {Stage.SYMBOLS: self.symbols, Stage.Y_HAT: self.y_hat, Stage.RECON: recon}
        return {str(name): stage_hash(arrays[name]) for name in FACTORIZED_STAGES if arrays[name] is not None}


def load_model(package: CodecPackage) -> contexts.ContextModel:
    """The package's context model: its tables (hash-checked files) and the manifest's parameters."""
    params = package.manifest.get("contexts")
    if not isinstance(params, dict):
        raise PackageError("a lowcomplexity package needs a `contexts` entry in its manifest")
    tables = CodeTables.load_npz(io.BytesIO(package.read(Y_TABLES)))
    activation = None
    if params.get("activation"):
        activation = CodeTables.load_npz(io.BytesIO(package.read(ACTIVATION_TABLES)))
    try:
        return contexts.ContextModel.from_json(params, tables, activation)
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"malformed `contexts` in the manifest: {exc}") from None


class LowComplexityCodec(FamilyCodec):
    """A loaded lowcomplexity package bound to one runtime; the API of `Codec`."""

    def __init__(self, package: CodecPackage, runtime: str = "ort-cpu") -> None:
        self.package = package
        self.digest = package.digest
        self.precision = package.manifest["precision"]
        self.runtime_name = runtime
        self.arch = networks.Architecture.from_dict(package.manifest["architecture"])
        self.model = load_model(package)
        if self.model.channels != self.arch.m:
            raise PackageError(f"the context model has {self.model.channels} channels, y has {self.arch.m}")
        self.y_channels = self.arch.m
        self._backend = get_runtime(runtime)
        self._analysis = self._backend.session(package.read(ANALYSIS), retain_memory=True)
        self._synthesis = self._backend.session(package.read(SYNTHESIS), retain_memory=True)
        self._lean = {}
        self._rdoq_synthesis = None  # RDOQ's g_s, made on first use (codec/rdoq_lowcx.py)

    def encode(
        self, image: np.ndarray, reconstruct: bool = True, rdoq: RdoqOptions | None = None
    ) -> EncodeResult:
        """`Codec.encode`; `rdoq` optimises y_hat with the context model's exact rates (codec/rdoq_lowcx.py).
        Every package of the family has an exact entropy decoder, so none is refused."""
        image = validate_image(image)
        height, width = image.shape[:2]
        clock = StageClock()
        analysis = self._network(ANALYSIS, self._analysis, height, width)
        y = np.asarray(analysis.run({"x": networks.pad_image(image)})["y"])
        clock.lap("analysis")
        y_hat = _rint_symbols(y)
        rdoq_stats = None
        if rdoq is not None:
            from codec.rdoq_lowcx import optimise_lowcx

            y_hat, rdoq_stats = optimise_lowcx(self, image, y_hat, rdoq)
            clock.lap("rdoq")
        sections = contexts.encode(self.model, y_hat)
        latents = FactorizedLatents(y_hat, y_hat)
        clock.lap("y_coding")
        recon = None
        if reconstruct:
            recon = self._synthesise(y_hat, height, width)
            clock.lap("synthesis")
        data = bitstream.pack(bitstream.Bitstream(self.digest, height, width, sections))
        return EncodeResult(
            bitstream=data,
            stage_hashes=latents.hashes(recon),
            bpp=bits_per_pixel(len(data), height, width),
            psnr=None if recon is None else psnr_db(image, recon),
            timings=clock.total(),
            recon=recon,
            scale_index=self.model.table_indexes(y_hat),
            latents=latents,  # type: ignore[arg-type]
            y_hat_real=y_hat.astype(np.float32),
            y=y,
            rdoq=rdoq_stats,
        )

    def decode(self, data: bytes, allow_foreign: bool = False) -> DecodeResult:
        clock = StageClock()
        parsed = bitstream.unpack(data, expected_digest=None if allow_foreign else self.digest)
        problem = size_problem(parsed.height, parsed.width)
        if problem is not None:
            raise LengthFieldError(f"the bitstream declares an image the decoder refuses: {problem}")
        expected = contexts.section_names(self.model)
        if tuple(parsed.sections) != expected:
            raise LengthFieldError(f"bitstream sections are {list(parsed.sections)}, not {list(expected)}")
        shape = networks.latent_shape(parsed.height, parsed.width)
        y_hat = contexts.decode(self.model, parsed.sections, shape)
        latents = FactorizedLatents(y_hat, y_hat)
        clock.lap("y_coding")
        recon = self._synthesise(y_hat, parsed.height, parsed.width)
        clock.lap("synthesis")
        return DecodeResult(
            recon=recon,
            stage_hashes=latents.hashes(recon),
            timings=clock.total(),
            scale_index=self.model.table_indexes(y_hat),
            latents=latents,  # type: ignore[arg-type]
            y_hat_real=y_hat.astype(np.float32),
            bitstream_codec=parsed.codec_digest,
        )

    def decode_hyper(self, data: bytes, allow_foreign: bool = False):  # type: ignore[no-untyped-def]
        raise PackageError("a lowcomplexity package has no hyper-latent")

    def hyper_raw(self, z_hat: np.ndarray) -> None:
        return None

    def _synthesise(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        synthesis = self._network(SYNTHESIS, self._synthesis, height, width)
        if Precision(
            self.precision
        ).integer_synthesis:  # int32 y_hat in, uint8 pixels out (codec/intsynth.py)
            pixels = np.asarray(synthesis.run({"y_hat": np.ascontiguousarray(y_hat)})["x_hat"])
            return np.ascontiguousarray(pixels[0, :, :height, :width].astype(np.uint8).transpose(1, 2, 0))
        x_hat = np.asarray(synthesis.run({"y_hat": y_hat.astype(np.float32)})["x_hat"])
        return networks.to_uint8_image(x_hat, height, width)


def load(path: str | Path, runtime: str = "ort-cpu") -> LowComplexityCodec:
    return LowComplexityCodec(CodecPackage.load(path), runtime)
