"""A cell's verdict and evidence, judged from its encode and decode rows: nondeterminism, the reconstruction
difference, the first mismatching element of a desync, a symbol-exact cell's latent drift, drift per stage and
the near-miss risk (server/drift.py).

Everything is read from rows already in hand and from blobs by digest (server/blobcache.py): the per-element
maps both sides returned with their results, so no worker is called again. Packages' facts (precision, latent
format, stages) are read once per package; a package row never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codec.codec import latent_format
from codec.entropy import FLOAT
from codec.errors import CodecError
from codec.stages import package_stages
from codec.vocabulary import Precision
from server import drift, verdicts
from server.blobcache import BlobCache, MapSet
from server.db import Database
from server.forensics import LOCATION_FIELDS, IndexMapError, first_mismatch, max_abs_difference
from server.models import Cell, Decode, Drift, Encode, Mismatch
from server.models import Codec as CodecRow
from server.planning import Unit
from server.storage import BlobNotFound, BlobStore


@dataclass(frozen=True)
class CodecFacts:
    precision: str
    float_mean: bool  # the package's mean is float: latent drift is symbol-exact, not a desync
    archive_sha256: str
    stages: tuple[str, ...]  # the stages its codec reports (codec.stages.package_stages)


class CellEvidence:
    """Cells judged from rows already read (it reads only package rows and blobs)."""

    def __init__(self, db: Database, store: BlobStore, cache: BlobCache) -> None:
        self.db, self.store, self.cache = db, store, cache
        self._codecs: dict[int, CodecFacts] = {}

    def judge(
        self,
        job_id: int,
        unit: Unit,
        decoder_target: str,
        encodes: list[Encode],
        decodes: list[Decode],
        peer: Encode | None,
    ) -> tuple[Cell, Mismatch | None, list[Drift]]:
        """The cell with its verdict, and its mismatch and drift rows (not inserted)."""
        cell = self._evaluate(job_id, unit, decoder_target, encodes, decodes)
        first = encodes[0] if encodes else None
        first_decode = decodes[0] if decodes else None
        mismatch = None
        if cell.verdict == verdicts.DESYNC:
            mismatch = self._locate(first, first_decode, cell.first_stage)
        elif cell.verdict == verdicts.SYMBOL_EXACT:
            self._measure_latent_drift(cell, first, first_decode)
        return cell, mismatch, self._measure_drift(cell, unit, first, first_decode, peer)

    def _codec(self, codec_id: int) -> CodecFacts:
        """A package's precision, latent format and archive (a row that never changes), read once."""
        found = self._codecs.get(codec_id)
        if found is None:
            with self.db.session() as session:
                row = session.get(CodecRow, codec_id)
                found = CodecFacts(
                    row.precision, _float_mean(row.manifest), row.archive_sha256, _stages(row.manifest)
                )
            self._codecs[codec_id] = found
        return found

    def _evaluate(
        self, job_id: int, unit: Unit, decoder_target: str, encodes: list[Encode], decodes: list[Decode]
    ) -> Cell:
        first_encode = encodes[0] if encodes else None
        first_decode = decodes[0] if decodes else None
        encode_outcome = _outcome(first_encode) if first_encode else verdicts.Outcome(verdicts.NOT_RUN)
        codec = self._codec(unit.codec_id)
        decode_outcome = _outcome(first_decode) if first_decode else None
        verdict = verdicts.decide(encode_outcome, decode_outcome, codec.float_mean, codec.stages)
        notes = [
            note
            for note in (
                _prefixed(
                    "encoder",
                    verdicts.nondeterminism(
                        [_outcome(e) for e in encodes], [e.bitstream_sha256 for e in encodes]
                    ),
                ),
                _prefixed("decoder", verdicts.nondeterminism([_outcome(d) for d in decodes])),
            )
            if note
        ]
        cell = Cell(
            job_id=job_id,
            codec_id=unit.codec_id,
            image_id=unit.image_id,
            encoder_target=unit.target,
            decoder_target=decoder_target,
            verdict=verdict.verdict,
            first_stage=verdict.first_stage,
            detail=verdict.detail,
            nondeterministic=bool(notes),
            nondeterminism_detail="; ".join(notes),
            encode_id=first_encode.id if first_encode else None,
            decode_id=first_decode.id if first_decode else None,
            decoder_codec_id=first_decode.codec_id if first_decode else None,
            encoder_fingerprint_id=first_encode.fingerprint_id if first_encode else None,
            decoder_fingerprint_id=first_decode.fingerprint_id if first_decode else None,
            emulated=bool(
                (first_encode and first_encode.emulated) or (first_decode and first_decode.emulated)
            ),
        )
        if verdict.verdict in (verdicts.LATENT_EXACT, verdicts.SYMBOL_EXACT):
            self._measure_recon_difference(cell, first_encode, first_decode)
        return cell

    def _measure_recon_difference(self, cell: Cell, encode: Encode, decode: Decode) -> None:
        if not (encode.recon_sha256 and decode.recon_sha256):
            cell.detail += "; reconstructions not returned, difference not measured"
            return
        encoder_recon = self.cache.image(encode.recon_sha256)
        decoder_recon = self.cache.image(decode.recon_sha256)
        cell.max_abs_diff, cell.recon_psnr = verdicts.recon_difference(encoder_recon, decoder_recon)

    def _maps(self, row: Encode | Decode | None) -> MapSet:
        if row is None or row.maps_sha256 is None:
            raise IndexMapError("the maps were not returned (too large, or an older worker)")
        try:
            return self.cache.maps(row.maps_sha256)
        except BlobNotFound:
            raise IndexMapError("the maps were not returned (too large, or an older worker)") from None

    def _locate(self, encode: Encode, decode: Decode | None, stage: str | None) -> Mismatch:
        """The first latent element (coding order) whose scale index or symbol differs between the sides."""
        mismatch = Mismatch(stage=stage or "", detail="")
        notes = []
        if decode is not None and decode.status == verdicts.FAILED:
            notes.append(f"the decoder refused the stream: {decode.error_code}: {decode.error_detail}")
        what = "first element whose scale index or symbol differs (C order, the coding order)"
        try:
            encoder, decoder = self._maps(encode), self._maps(decode)
            symbols = [
                side.array("symbol_map") if "symbol_map" in side else None for side in (encoder, decoder)
            ]
            if symbols[1] is None:
                symbols = [None, None]
            found = first_mismatch(encoder.array("index_map"), decoder.array("index_map"), *symbols)
            if found is None and "mean_map" in encoder and "mean_map" in decoder:
                found = first_mismatch(
                    encoder.array("index_map"),
                    decoder.array("index_map"),
                    encoder.array("mean_map"),
                    decoder.array("mean_map"),
                )
                what = "first element whose fixed-point mean differs (C order; values are the means)"
        except (IndexMapError, KeyError) as exc:
            notes.append(f"not located: {exc}")
            mismatch.detail = "; ".join(notes)
            return mismatch
        if found is None:
            notes.append("scale indexes and symbols agree everywhere the decoder got to")
        else:
            for name in LOCATION_FIELDS:
                setattr(mismatch, name, getattr(found, name))
            notes.append(what)
        mismatch.detail = "; ".join(notes)
        return mismatch

    def _measure_latent_drift(self, cell: Cell, encode: Encode, decode: Decode) -> None:
        """A symbol-exact cell's largest |y_hat encoder - y_hat decoder|, in latent units."""
        try:
            encoder, decoder = self._maps(encode), self._maps(decode)
            cell.y_hat_max_abs_diff = max_abs_difference(
                encoder.array("y_hat_map"), decoder.array("y_hat_map")
            )
        except (IndexMapError, KeyError) as exc:
            cell.detail += f"; y_hat drift not measured: {exc}"

    def _measure_drift(
        self, cell: Cell, unit: Unit, encode: Encode | None, decode: Decode | None, peer: Encode | None
    ) -> list[Drift]:
        """Drift per stage and the near-miss risk (server/drift.py), for a cell whose decode got an answer."""
        if encode is None or decode is None or encode.status != verdicts.DONE:
            return []
        if decode.status not in (verdicts.DONE, verdicts.FAILED):
            return []
        cell.silent_corruption = (
            cell.verdict == verdicts.DESYNC
            and decode.status == verdicts.DONE
            and (encode.stage_hashes or {}).get("y_hat") != (decode.stage_hashes or {}).get("y_hat")
        )
        codec = self._codec(unit.codec_id)
        notes: list[str] = []
        head = None
        if codec.precision == Precision.FLOAT:
            try:
                head = drift.codec_head(str(self.store.root), codec.archive_sha256)
            except (CodecError, ValueError, OSError) as exc:
                notes.append(f"h_s head unreadable: {exc}")
        try:
            sides = drift.Sides(
                self._maps_or_none(encode),
                self._maps_or_none(decode),
                self._maps_or_none(peer),
                self._recon(encode),
                self._recon(decode),
            )
            measured = drift.measure(codec.precision, head, sides)
        except (IndexMapError, ValueError, KeyError) as exc:
            measured = drift.CellDrift([], drift.CellRisk(drift.RISK_NOT_MEASURED, notes=[str(exc)]))
        risk = measured.risk
        cell.risk, cell.min_margin_ulp = risk.basis, risk.min_margin_ulp
        cell.predicted_flips, cell.observed_flips = risk.predicted_flips, risk.observed_flips
        cell.failure_probability = risk.failure_probability
        notes += [note for note in risk.notes if note != drift.CERTIFICATE_NOTE]
        if notes:
            cell.detail = "; ".join(filter(None, [cell.detail, *notes]))
        return [
            Drift(
                stage=stage.stage,
                elements=stage.figures.elements,
                differing=stage.figures.differing,
                max_abs_diff=stage.figures.max_abs_diff,
                max_ulp=stage.figures.max_ulp,
            )
            for stage in measured.stages
        ]

    def _maps_or_none(self, row: Encode | Decode | None) -> dict[str, Any] | None:
        try:
            return self._maps(row)
        except IndexMapError:
            return None

    def _recon(self, row: Encode | Decode) -> Any:
        if not row.recon_sha256:
            return None
        try:
            return self.cache.image(row.recon_sha256)
        except BlobNotFound:
            return None


def _float_mean(manifest: dict[str, Any]) -> bool:
    try:
        return latent_format(manifest).mean == FLOAT
    except (CodecError, KeyError, TypeError, ValueError):
        return True  # a manifest this coordinator cannot read: the more lenient verdict, with no claim


def _stages(manifest: dict[str, Any]) -> tuple[str, ...]:
    return package_stages(manifest if isinstance(manifest, dict) else {})


def _outcome(row: Encode | Decode) -> verdicts.Outcome:
    return verdicts.Outcome(row.status, row.stage_hashes, row.error_code, row.error_detail)


def _prefixed(side: str, note: str) -> str:
    return f"{side}: {note}" if note else ""
