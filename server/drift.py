"""Drift and near-miss risk of one cell, from the maps both sides returned (arithmetic: codec/nearmiss.py).

Drift, per stage (`DRIFT_STAGES`), as max |difference|, max ULP difference and the fraction of elements that
differ:
- `h_s`: the hyper-synthesis output. For a float package its raw float output on both sides (`hs_raw_map`),
  for an integer package its integer results (scale indexes and means), which the certificate makes equal.
- `y`: g_a's output, which only encoders compute: the cell's encoder against the decoder's target encoding
  the same image (absent on the diagonal and when the decoder's target did not encode).
- `recon`: the two reconstructions (uint8: one ULP is one grey level).

Risk (`RiskBasis`): `measured` for a float package: the encoder's margins, the flips predicted from the
drift, the flips observed in the decoder's scale indexes and means, and the failure probability of a 768x512
image; `certificate` for an integer package (no flip is possible: the risk is zero by construction);
`not-measured` when the maps needed are missing, with the reason.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec import nearmiss, networks
from codec.heads import Head, LevelHead
from codec.hyper import hs_head
from codec.package import CodecPackage
from codec.vocabulary import Precision, RiskBasis
from server.forensics import IndexMapError, decode_array
from server.storage import BlobStore

DRIFT_STAGES = ("h_s", "y", "recon")
RISK_MEASURED, RISK_CERTIFICATE = RiskBasis.MEASURED, RiskBasis.CERTIFICATE
RISK_NOT_MEASURED = RiskBasis.NOT_MEASURED
AT_RISK_PROBABILITY = 0.01  # a passing cell whose 768x512 failure estimate reaches this is shown at risk
CERTIFICATE_NOTE = (
    "integer h_s: its overflow certificate proves every device computes the same integers, so no scale "
    "index or mean can flip"
)


@dataclass(frozen=True)
class StageDrift:
    stage: str
    figures: nearmiss.DriftFigures


@dataclass
class CellRisk:
    basis: str
    min_margin_ulp: int | None = None
    predicted_flips: int | None = None
    observed_flips: int | None = None
    failure_probability: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class CellDrift:
    stages: list[StageDrift]
    risk: CellRisk


@dataclass(frozen=True)
class Sides:
    """What the cell's two sides returned: their maps (decoded on use) and reconstructions."""

    encoder_maps: dict[str, Any] | None
    decoder_maps: dict[str, Any] | None
    peer_encoder_maps: dict[str, Any] | None  # the decoder target's own encode of the image, for y
    encoder_recon: np.ndarray | None
    decoder_recon: np.ndarray | None


def is_at_risk(verdict_passes: bool, failure_probability: float | None) -> bool:
    return verdict_passes and failure_probability is not None and failure_probability >= AT_RISK_PROBABILITY


@functools.lru_cache(maxsize=32)
def codec_head(store_root: str, archive_sha256: str) -> Head:
    """The h_s head of a stored codec archive (its graph's metadata)."""
    package = CodecPackage.load(BlobStore(store_root).path(archive_sha256))
    return hs_head(package.read("hyper_synthesis.onnx"))


def measure(precision: str, head: Head | None, sides: Sides) -> CellDrift:
    stages = [drift for drift in (_hs_drift(sides), _y_drift(sides), _recon_drift(sides)) if drift]
    if precision != Precision.FLOAT:
        risk = _certified(sides)
    elif head is None:
        risk = CellRisk(RISK_NOT_MEASURED, notes=["the codec's h_s head is unknown"])
    else:
        risk = _measured(head, sides)
    return CellDrift(stages, risk)


def _map(maps: dict[str, Any] | None, name: str) -> np.ndarray | None:
    if maps is None or name not in maps:
        return None
    values = maps.array(name) if hasattr(maps, "array") else decode_array(maps[name])  # a cached MapSet
    dtype = maps[name].get("dtype") if isinstance(maps[name], dict) else None
    return values.astype(np.float32) if dtype == "float32" else values


def _pair(sides: Sides, name: str, peer: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    left = _map(sides.encoder_maps, name)
    right = _map(sides.peer_encoder_maps if peer else sides.decoder_maps, name)
    if left is None or right is None or left.shape != right.shape:
        return None
    return left, right


def _hs_drift(sides: Sides) -> StageDrift | None:
    raw = _pair(sides, "hs_raw_map")
    if raw is not None:
        return StageDrift("h_s", nearmiss.drift_figures(*raw))
    parts = [_pair(sides, name) for name in ("index_map", "mean_map")]
    if any(part is None for part in parts):
        return None
    left = np.concatenate([part[0].ravel() for part in parts]).astype(np.int64)
    right = np.concatenate([part[1].ravel() for part in parts]).astype(np.int64)
    return StageDrift("h_s", nearmiss.drift_figures(left, right))


def _y_drift(sides: Sides) -> StageDrift | None:
    pair = _pair(sides, "y_map", peer=True) if sides.peer_encoder_maps is not None else None
    return StageDrift("y", nearmiss.drift_figures(*pair)) if pair else None


def _recon_drift(sides: Sides) -> StageDrift | None:
    left, right = sides.encoder_recon, sides.decoder_recon
    if left is None or right is None or left.shape != right.shape:
        return None
    return StageDrift("recon", nearmiss.drift_figures(left, right))


def _observed_flips(sides: Sides, with_mean: bool) -> int | None:
    names = ("index_map", "mean_map") if with_mean else ("index_map",)
    pairs = [_pair(sides, name) for name in names]
    if any(pair is None for pair in pairs):
        return None
    return int(sum(np.count_nonzero(left != right) for left, right in pairs))


def _certified(sides: Sides) -> CellRisk:
    risk = CellRisk(RISK_CERTIFICATE, predicted_flips=0, failure_probability=0.0, notes=[CERTIFICATE_NOTE])
    risk.observed_flips = _observed_flips(sides, with_mean=True)
    if risk.observed_flips:
        risk.notes.append(f"yet {risk.observed_flips} scale indexes or means differ: the certificate fails")
    return risk


def _measured(head: Head, sides: Sides) -> CellRisk:
    raw = _pair(sides, "hs_raw_map")
    if raw is None:
        missing = "decoder" if _map(sides.encoder_maps, "hs_raw_map") is not None else "encoder"
        return CellRisk(RISK_NOT_MEASURED, notes=[f"the {missing} returned no raw h_s output"])
    encoder_raw, decoder_raw = raw
    drift = decoder_raw.astype(np.float64) - encoder_raw.astype(np.float64)
    reference = np.prod(networks.latent_shape(nearmiss.REFERENCE_HEIGHT, nearmiss.REFERENCE_WIDTH))
    predicted, margins, per_kind = 0, [], []
    for decision in nearmiss.decisions(head, encoder_raw):
        m = decision.values.shape[1]
        d = drift[:, m:] if decision.stage == "mean" else drift[:, :m]
        predicted += int(decision.interval.flips(decision.values, d).sum())
        ulps = decision.interval.margin_ulps(decision.values)
        margins.append(ulps[ulps >= 0])
        q = nearmiss.flip_probability(decision.interval, decision.values, d)
        per_kind.append((q, int(m * reference)))
    reachable = np.concatenate(margins) if margins else np.zeros(0, np.int64)
    risk = CellRisk(
        RISK_MEASURED,
        min_margin_ulp=int(reachable.min()) if reachable.size else None,
        predicted_flips=predicted,
        observed_flips=_observed_flips(sides, with_mean=isinstance(head, LevelHead)),
        failure_probability=nearmiss.failure_probability(per_kind),
    )
    if risk.observed_flips is not None and risk.observed_flips != risk.predicted_flips:
        risk.notes.append(
            f"{risk.predicted_flips} flips predicted from the raw h_s values, {risk.observed_flips} "
            "observed: the raw values do not explain the decoder's decisions"
        )
    return risk


def margin_histogram_data(head: Head, sides: Sides) -> tuple[np.ndarray, np.ndarray] | None:
    """(margins in ULPs of every element that can flip, |drift| in ULPs of every element that drifted),
    for the cell page's histogram; None without both raw h_s outputs."""
    raw = _pair(sides, "hs_raw_map")
    if raw is None:
        return None
    encoder_raw, decoder_raw = raw
    margins = []
    for decision in nearmiss.decisions(head, encoder_raw):
        ulps = decision.interval.margin_ulps(decision.values)
        margins.append(ulps[ulps >= 0])
    drift = nearmiss.ulp_distance(encoder_raw, decoder_raw).ravel()
    return np.concatenate(margins), drift[drift > 0]


def maps_json(data: bytes) -> dict[str, Any]:
    try:
        maps = json.loads(data)
    except ValueError as exc:
        raise IndexMapError(f"stored maps are not JSON: {exc}") from None
    if not isinstance(maps, dict):
        raise IndexMapError("stored maps are not a JSON object")
    return maps
