"""Cell verdicts: pure functions from what the encoder and decoder reported to one verdict with its evidence.

Order of comparison: an outcome that is not a result (error, timeout, worker-lost, not-run) is the verdict;
a decode the codec refused in the entropy path is a desync; then the parse stages in coding order (z_hat,
scale_index, symbols: the first that differs is a desync); then the rebuilt latents (mean, y_hat): with a
float mean a difference over an intact parse is symbol-exact, the drift of that mean; with a fixed-point
mean it is a desync, a mean that rounded the other way (the decoder's y_hat is silently wrong); then the
reconstruction (bit-exact or latent-exact).

Passing verdicts: bit-exact, latent-exact and symbol-exact. The last two mean the decoder read exactly the
symbols the encoder wrote, and then rebuilt y_hat (symbol-exact) or only the image (latent-exact) a little
differently: "drift changes the reconstruction, never the parse". A desync is a broken parse.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codec.stages import LATENT_STAGES, PARSE_STAGES, RECON, STAGES, expected_stages
from codec.vocabulary import TaskStatus, Verdict

BIT_EXACT, LATENT_EXACT, SYMBOL_EXACT = Verdict.BIT_EXACT, Verdict.LATENT_EXACT, Verdict.SYMBOL_EXACT
DESYNC, ERROR, TIMEOUT = Verdict.DESYNC, Verdict.ERROR, Verdict.TIMEOUT
WORKER_LOST, NOT_RUN = Verdict.WORKER_LOST, Verdict.NOT_RUN
VERDICTS = tuple(Verdict)
PASSING = frozenset(v for v in Verdict if v.passes)

DONE, FAILED = TaskStatus.DONE, TaskStatus.FAILED
UNFINISHED_TO_VERDICT = {
    TaskStatus.ERROR: Verdict.ERROR,
    TaskStatus.TIMEOUT: Verdict.TIMEOUT,
    TaskStatus.WORKER_LOST: Verdict.WORKER_LOST,
    TaskStatus.NOT_RUN: Verdict.NOT_RUN,
    TaskStatus.PENDING: Verdict.NOT_RUN,
    TaskStatus.RUNNING: Verdict.NOT_RUN,
}
ENTROPY_DECODE_STAGE = "entropy-decode"


@dataclass(frozen=True)
class Outcome:
    """What one encode or decode ended with."""

    status: str
    stage_hashes: dict[str, Any] | None = None
    error_code: str | None = None
    error_detail: str | None = None


@dataclass(frozen=True)
class Verdict:
    verdict: str
    first_stage: str | None = None
    detail: str = ""


def decide(
    encode: Outcome, decode: Outcome | None, float_mean: bool = True, stages: tuple[str, ...] | None = None
) -> Verdict:
    """The cell's verdict; `float_mean`: whether the package's mean is float (latent drift is then
    symbol-exact) or fixed point (a differing mean is then a desync); `stages`: the stages the package's
    codec reports (codec.stages.package_stages), None to infer them from the hashes."""
    if encode.status != DONE:
        verdict = UNFINISHED_TO_VERDICT.get(encode.status, ERROR)
        return Verdict(verdict, detail=f"encoder {encode.status}: {_why(encode)}")
    if decode is None:
        return Verdict(NOT_RUN, detail="decode was never scheduled")
    if decode.status == FAILED:
        return Verdict(DESYNC, ENTROPY_DECODE_STAGE, f"entropy decode failed: {_why(decode)}")
    if decode.status != DONE:
        verdict = UNFINISHED_TO_VERDICT.get(decode.status, ERROR)
        return Verdict(verdict, detail=f"decoder {decode.status}: {_why(decode)}")
    return compare_hashes(encode.stage_hashes or {}, decode.stage_hashes or {}, float_mean, stages)


def compare_hashes(
    encoder: dict[str, Any],
    decoder: dict[str, Any],
    float_mean: bool = True,
    stages: tuple[str, ...] | None = None,
) -> Verdict:
    """Without `stages` (a caller that has no manifest) a cell neither side reported a hyperprior stage for
    is judged on the factorized stages; with them, a missing stage is an error whatever the sides sent."""
    required = stages or expected_stages(encoder, decoder)
    for stage in required:
        if not encoder.get(stage) or not decoder.get(stage):
            side = "encoder" if not encoder.get(stage) else "decoder"
            return Verdict(ERROR, stage, f"{side} reported no {stage} hash")
    for stage in (stage for stage in PARSE_STAGES if stage in required):
        if encoder[stage] != decoder[stage]:
            return Verdict(
                DESYNC,
                stage,
                f"{stage} differs: encoder {encoder[stage][:12]}…, decoder {decoder[stage][:12]}…",
            )
    if encoder["y_hat"] != decoder["y_hat"]:
        stage = next(s for s in LATENT_STAGES if encoder.get(s) != decoder.get(s))
        if not float_mean:
            detail = "symbols identical, but a fixed-point mean rounded the other way: y_hat differs"
            return Verdict(DESYNC, stage, detail)
        return Verdict(SYMBOL_EXACT, stage, "symbols identical, y_hat differs by the drift of the mean")
    if encoder[RECON] == decoder[RECON]:
        return Verdict(BIT_EXACT)
    return Verdict(LATENT_EXACT, RECON, "y_hat identical, reconstruction differs")


def _why(outcome: Outcome) -> str:
    return f"{outcome.error_code or outcome.status}: {outcome.error_detail or ''}".strip(": ")


def recon_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, float | None]:
    """Max absolute difference and PSNR (dB, peak 255) between two uint8 images; PSNR None when identical."""
    if a.shape != b.shape:
        raise ValueError(f"reconstructions differ in shape: {a.shape} vs {b.shape}")
    diff = a.astype(np.int64) - b.astype(np.int64)
    max_abs = int(np.abs(diff).max()) if diff.size else 0
    mse = float(np.mean(diff.astype(np.float64) ** 2)) if diff.size else 0.0
    return max_abs, (None if mse == 0 else float(10 * np.log10(255.0**2 / mse)))


def psnr(reference: np.ndarray, test: np.ndarray) -> float | None:
    return recon_difference(reference, test)[1]


def nondeterminism(repeats: Sequence[Outcome], extra: Sequence[str | None] = ()) -> str:
    """Describe how same-device repeats disagree ('' when they agree or fewer than two finished).

    `extra` holds one more value per repeat that must also agree (the bitstream digest of encodes)."""
    finished = [(i, r) for i, r in enumerate(repeats) if r.status == DONE and r.stage_hashes]
    if len(finished) < 2:
        return ""
    _, first = finished[0]
    differing: list[str] = []
    for stage in STAGES:
        if any(
            (r.stage_hashes or {}).get(stage) != (first.stage_hashes or {}).get(stage) for _, r in finished
        ):
            differing.append(stage)
    if extra and len({extra[i] for i, _ in finished}) > 1:
        differing.append("bitstream")
    if not differing:
        return ""
    return f"{len(finished)} repeats disagree on {', '.join(differing)}"


def broken_line(cells: Sequence[dict[str, Any]]) -> str:
    """One line on what a job shows: per codec, how many of its cross-device decodes broke (desynced), e.g.
    "float: 5 of 48 cross-device decodes broke; int16: 0". Codecs are named by precision when that is
    unambiguous within the job and the codec is a hyperprior, else by name (`lowcomplexity-int16-full-…`)."""
    order: dict[str, dict[str, Any]] = {}
    for cell in cells:
        order.setdefault(cell["codec"], cell)
    precisions = [cell["precision"] for cell in order.values()]
    parts = []
    for digest, first in order.items():
        by_precision = precisions.count(first["precision"]) == 1 and not _names_a_family(first)
        label = first["precision"] if by_precision else first["codec_name"]
        cross = [c for c in cells if c["codec"] == digest and c["encoder"] != c["decoder"]]
        broken = sum(c["verdict"] == DESYNC for c in cross)
        parts.append(
            f"{label}: {broken} of {len(cross)} cross-device decodes broke" if broken else f"{label}: 0"
        )
    return "; ".join(parts)


def _names_a_family(cell: dict[str, Any]) -> bool:
    """The codec's label starts with a family other than the hyperprior (server/catalog.py's codec_label)."""
    return str(cell.get("codec_name", "")).startswith("lowcomplexity")
