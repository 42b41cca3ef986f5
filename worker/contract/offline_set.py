"""The offline result-set directory (format `bitmatch-result-set`, version 1), and reading one back.

`bitmatch encode-set` and `decode-set` write them (worker/offline.py); `bitmatch aggregate` reads them
(server/offline.py):

    set.json                 kind (encode | decode), id, target, fingerprint, tasks, and for encode sets
                             the codecs and images
    codecs/<digest>.tar      encode sets: every package, so a decoding runner needs nothing else
    images/<digest>.png      encode sets: the source images (the decoders' PSNR, the aggregate)
    bitstreams/<sha256>.bmc  encode sets: every bitstream, as a file
    results/<task>.json      one TaskReport (worker/contract/results.py) per task: the same result JSON a
                             worker answers over HTTP, or the error it would answer
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codec.errors import CodecError
from worker.contract.results import TaskReport

FORMAT, VERSION = "bitmatch-result-set", 1
SET_FILE = "set.json"


class SetError(CodecError):
    """A result set that cannot be read or written: missing, damaged, or of another format."""

    code = "bad-result-set"


def load_set(path: Path, expect: str | None = None) -> dict[str, Any]:
    """A set's manifest, checked (SetError with the reason otherwise)."""
    try:
        manifest = json.loads((path / SET_FILE).read_text())
    except FileNotFoundError:
        raise SetError(f"{path} is not a result set: no {SET_FILE}") from None
    except (OSError, ValueError) as exc:
        raise SetError(f"{path / SET_FILE} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SetError(f"{path} is not a bitmatch result set")
    if manifest.get("version") != VERSION:
        raise SetError(
            f"{path}: result-set version {manifest.get('version')} (this bitmatch reads {VERSION})"
        )
    if expect is not None and manifest.get("kind") != expect:
        raise SetError(f"{path} is a {manifest.get('kind')} set, not an {expect} set")
    return manifest


def iter_reports(path: Path, manifest: dict[str, Any]) -> Iterator[tuple[dict[str, Any], TaskReport]]:
    """(task entry, its report) for every task of a set, each report validated against the contract."""
    from pydantic import ValidationError

    for entry in manifest.get("tasks", []):
        report_path = path / entry["report"]
        try:
            report = TaskReport.model_validate_json(report_path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise SetError(f"{report_path}: {str(exc).splitlines()[0]}") from None
        yield entry, report
