"""Typed errors of the codec library.

Every failure a user can provoke with bad input maps to one of these classes, so callers (the worker, the
coordinator, the CLI) can report it by name instead of catching bare numpy or OS exceptions.
"""


class CodecError(Exception):
    """Base class of every error the codec library raises on purpose."""

    code = "codec-error"


class BitstreamError(CodecError):
    """The bitstream cannot be decoded."""

    code = "bitstream-error"


class BadMagic(BitstreamError):
    code = "bad-magic"


class UnsupportedVersion(BitstreamError):
    code = "unsupported-version"


class WrongCodec(BitstreamError):
    """The bitstream was made by another codec package."""

    code = "wrong-codec"


class Truncated(BitstreamError):
    code = "truncated"


class CrcMismatch(BitstreamError):
    code = "crc-mismatch"


class SymbolOutOfRange(BitstreamError):
    """A symbol, escape value or table index lies outside its table."""

    code = "symbol-out-of-range"


class LengthFieldError(BitstreamError):
    """A length or size field is inconsistent with the data that follows it."""

    code = "bad-length"


class CorruptStream(BitstreamError):
    """The entropy decoder did not end in its initial state: the stream is damaged or desynchronised."""

    code = "corrupt-stream"


class ImageError(CodecError):
    """The input image is not a usable uint8 RGB image."""

    code = "bad-image"


class PackageError(CodecError):
    """A codec package is malformed, fails its hash check or is incompatible."""

    code = "bad-package"


class RdoqUnsupported(CodecError):
    """RDOQ was asked of a package it cannot serve (a decoder that is not exact, no lambda)."""

    code = "rdoq-unsupported"
