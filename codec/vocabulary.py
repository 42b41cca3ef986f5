"""bitmatch's closed vocabularies, defined once: every module, the database, the HTTP APIs and the offline
files use these names.

They are `StrEnum`s: a member is its string (`Verdict.DESYNC == "desync"`), so rows, JSON and old files keep
reading the same, while code names the member instead of spelling the string. They live in the codec package
because it is the one every other package imports.
"""

from enum import StrEnum


class Stage(StrEnum):
    """What a codec reports a hash of, in coding order (codec/stages.py groups them)."""

    Z_HAT = "z_hat"
    SCALE_INDEX = "scale_index"
    SYMBOLS = "symbols"
    MEAN = "mean"
    Y_HAT = "y_hat"
    RECON = "recon"


class Precision(StrEnum):
    """The precision of a package's hyper-synthesis h_s; `int16-full` also has the integer synthesis g_s
    (codec/intsynth.py) after the int16 h_s. Otherwise g_a and g_s are float everywhere."""

    FLOAT = "float"
    INT16 = "int16"
    INT8 = "int8"
    INT16_FULL = "int16-full"

    @property
    def is_integer(self) -> bool:
        return self is not Precision.FLOAT

    @property
    def hs_precision(self) -> "Precision":
        """The precision of the h_s graph (an int16-full package's h_s is the int16 one)."""
        return Precision.INT16 if self is Precision.INT16_FULL else self

    @property
    def integer_synthesis(self) -> bool:
        """g_s is integer too: the reconstruction is bit-exact wherever y_hat is."""
        return self is Precision.INT16_FULL


class Lowering(StrEnum):
    """How an int16 h_s graph carries its integer products (codec/hyper.py; the proof: codec/intnet.py).

    `float64`: exact integers in float64 im2col + MatMul (every package before issue 15; the certificate of
    such a package names no lowering). The digit lowerings split the 16-bit activations and weights into
    8-bit digit planes, multiply them with MatMulInteger (int32 accumulators) and recombine them with integer
    post-ops in int64, so no node needs float64: `int8-digits` with s8 activation digits (s8 x s8, the type
    pair ONNX Runtime's CPU and CUDA kernels both take), `uint8-digits` with u8 activation digits (u8 x s8,
    the pair ONNX Runtime's x86 CPU kernels are fast at; its CUDA kernel refuses it).
    """

    FLOAT64 = "float64"
    INT8_DIGITS = "int8-digits"
    UINT8_DIGITS = "uint8-digits"


class Verdict(StrEnum):
    """A cell's verdict; only the first three pass (server/verdicts.py)."""

    BIT_EXACT = "bit-exact"
    LATENT_EXACT = "latent-exact"
    SYMBOL_EXACT = "symbol-exact"
    DESYNC = "desync"
    ERROR = "error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker-lost"
    NOT_RUN = "not-run"

    @property
    def passes(self) -> bool:
        return self in (Verdict.BIT_EXACT, Verdict.LATENT_EXACT, Verdict.SYMBOL_EXACT)

    @property
    def is_infrastructure(self) -> bool:
        """The cell produced no evidence: something around the codec failed."""
        return self in (Verdict.ERROR, Verdict.TIMEOUT, Verdict.WORKER_LOST, Verdict.NOT_RUN)


class TaskStatus(StrEnum):
    """An encode or decode in the queue. `failed` is a decode the codec refused with a typed bitstream
    error: a result, not an outage."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker-lost"
    NOT_RUN = "not-run"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)


class DeviceStatus(StrEnum):
    """Only healthy devices give verdicts."""

    HEALTHY = "healthy"
    QUARANTINED = "quarantined"
    OFFLINE = "offline"
    UNCHECKED = "unchecked"


class RiskBasis(StrEnum):
    """What a cell's near-miss risk rests on (server/drift.py)."""

    MEASURED = "measured"
    CERTIFICATE = "certificate"
    NOT_MEASURED = "not-measured"


class Trend(StrEnum):
    """A cell across runs (nights), after kci-dev's classes (server/history.py)."""

    NEW = "new"
    PASS = "pass"
    FIXED = "fixed"
    REGRESSION = "regression"
    UNSTABLE = "unstable"
    PERSISTENT_FAILURE = "persistent-failure"
    MISSING = "missing"


class ReplayOutcome(StrEnum):
    """One side of a repro bundle replayed on its own target (`bitmatch replay`, worker/replay.py)."""

    REPRODUCED = "reproduced"
    DIFFERS = "differs"
    NOT_RUN = "not-run"  # it could not be replayed here: never a pass


class Anchor(StrEnum):
    """The classic codecs every RD comparison is also made against (codec/anchors.py)."""

    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def title(self) -> str:
        return "JPEG" if self is Anchor.JPEG else "WebP"


class BdKind(StrEnum):
    """What a BD-rate of a job compares (server/bdrate.py): two rate families on the encoders' own
    reconstructions, a family against an anchor, or a decoder's reconstructions against the encoder's."""

    CODEC_VS_CODEC = "codec-vs-codec"
    CODEC_VS_ANCHOR = "codec-vs-anchor"
    DECODER_VS_ENCODER = "decoder-vs-encoder"
