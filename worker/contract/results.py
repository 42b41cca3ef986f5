"""The result models: what an encode or a decode returns, wherever it travels.

A worker answers its HTTP API with these models, a pull worker posts them, the offline `encode-set` and
`decode-set` write them to files, and the coordinator reads all three the same way (server/workerclient.py).
A task that produced no result is a `TaskError` (the HTTP status the front would answer, the typed code and
the detail); `TaskReport` holds one or the other.

Per-element tensors (`TensorMap`) are zlib-compressed little-endian arrays in base64; which ones a result
carries is described in worker/compute.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from codec.vocabulary import Stage

MAP_NAMES = ("index_map", "symbol_map", "mean_map", "y_hat_map", "hs_raw_map", "y_map")


class TensorMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: list[int]
    dtype: Literal["int32", "float32"]
    byteorder: Literal["little"] = "little"
    compression: Literal["zlib"] = "zlib"
    data: str = Field(description="base64 of the zlib-compressed array, C order")


class ErrorBody(BaseModel):
    """Every error answer of the worker's HTTP API."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(description="a typed code, e.g. crc-mismatch, unknown-codec, resource-limit")
    detail: str


class TaskError(ErrorBody):
    """A task that produced no result, with the HTTP status the worker's front answers it with."""

    status: int = Field(ge=400, le=599)


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bpp: float | None = None
    psnr: float | None = Field(default=None, description="against the source image; null when infinite")


class CodecResult(BaseModel):
    """What encodes and decodes share."""

    model_config = ConfigDict(extra="forbid")
    codec: str = Field(description="the package digest that ran")
    target: str
    height: int = Field(ge=0)
    width: int = Field(ge=0)
    stage_hashes: dict[Stage, str] = Field(description="SHA-256 of every stage (a partial decode: some)")
    metrics: Metrics = Field(default_factory=Metrics)
    timings: dict[str, float] = Field(default_factory=dict, description="milliseconds per step")
    fingerprint_sha256: str | None = Field(default=None, description="of the device that ran it")
    recon_png: str | None = Field(default=None, description="base64 PNG of the reconstruction")
    index_map: TensorMap | None = None
    symbol_map: TensorMap | None = None
    mean_map: TensorMap | None = None
    y_hat_map: TensorMap | None = None
    hs_raw_map: TensorMap | None = None
    y_map: TensorMap | None = None
    maps_omitted: str | None = Field(default=None, description="why the maps are missing (over the cap)")

    def maps(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).model_dump() for name in MAP_NAMES if getattr(self, name)}


class EncodeResult(CodecResult):
    bitstream: str = Field(description="base64 of the .bmc bitstream")
    bitstream_sha256: str
    bitstream_bytes: int = Field(ge=0)


class DecodeResult(CodecResult):
    partial: bool = Field(default=False, description="the y section failed: the maps decoded before it")
    decode_error: ErrorBody | None = None
    foreign_codec: str | None = Field(
        default=None, description="the digest the bitstream names, when another package decoded it"
    )

    @model_validator(mode="after")
    def _partial_has_its_error(self) -> DecodeResult:
        if self.partial and self.decode_error is None:
            raise ValueError("a partial decode names the error that stopped it")
        return self


class TaskReport(BaseModel):
    """One task's outcome: a result or an error (a pull worker's post, an offline result file)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["encode", "decode"]
    result: EncodeResult | DecodeResult | None = None
    error: TaskError | None = None

    @model_validator(mode="after")
    def _one_of_them(self) -> TaskReport:
        if (self.result is None) == (self.error is None):
            raise ValueError("a task report holds either a result or an error")
        if self.result is not None and isinstance(self.result, EncodeResult) != (self.kind == "encode"):
            raise ValueError(f"a {self.kind} report holds a {type(self.result).__name__}")
        return self


def parse_result(kind: str, body: dict[str, Any]) -> EncodeResult | DecodeResult:
    """A result JSON of the given kind, validated (pydantic's ValidationError otherwise)."""
    model = EncodeResult if kind == "encode" else DecodeResult
    return model.model_validate(body)
