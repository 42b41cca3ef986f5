"""Per-job exports: JSON (everything), CSV (one row per cell) and JUnit XML (one testcase per cell).

In JUnit only the passing verdicts (bit-exact, latent-exact, symbol-exact) without nondeterminism pass;
every case's system-out gives its verdict, a symbol-exact case's y_hat drift, the near-miss risk
(server/drift.py: basis, smallest margin, predicted and observed flips, failure probability, at-risk) and the
h_s drift. A passing cell at risk still passes: the verdict is what happened, the risk what may happen on
other images. desync and nondeterminism are failures; error, timeout and worker-lost are errors; not-run is a
failure too, since a test that did not run must never read as passed (a CI would count <skipped> as green).
"""

import csv
import io
import json
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy.orm import Session

from server import queries, verdicts
from server.models import Job

CSV_COLUMNS = (
    "id",
    "codec",
    "codec_name",
    "precision",
    "image",
    "image_name",
    "encoder",
    "decoder",
    "verdict",
    "passed",
    "nondeterministic",
    "emulated",
    "first_stage",
    "max_abs_diff",
    "recon_psnr",
    "y_hat_max_abs_diff",
    "mismatch_channel",
    "mismatch_y",
    "mismatch_x",
    "mismatch_encoder_level",
    "mismatch_decoder_level",
    "silent_corruption",
    "risk",
    "min_margin_ulp",
    "predicted_flips",
    "observed_flips",
    "failure_probability",
    "at_risk",
    "hs_max_ulp",
    "hs_fraction_differing",
    "y_max_ulp",
    "recon_max_abs_diff",
    "detail",
)
RISK_FIELDS = ("min_margin_ulp", "predicted_flips", "observed_flips", "failure_probability", "at_risk")
JUNIT_ERRORS = frozenset({verdicts.ERROR, verdicts.TIMEOUT, verdicts.WORKER_LOST})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def job_document(session: Session, job: Job) -> dict[str, Any]:
    return {
        "job": queries.job_summary(session, job),
        "cells": queries.cell_rows(session, job.id),
        "rd_points": queries.rd_points(session, job.id),
        "bd_rates": queries.bd_rates(session, job.id),
        "verdict_counts": queries.verdict_counts(session, job.id),
    }


def to_json(session: Session, job: Job) -> str:
    return json.dumps(job_document(session, job), indent=1, sort_keys=True, allow_nan=False, default=str)


def to_csv(session: Session, job: Job) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for cell in queries.cell_rows(session, job.id):
        mismatch = cell["mismatch"] or {}
        row = {name: cell.get(name) for name in CSV_COLUMNS}
        for name in ("channel", "y", "x", "encoder_level", "decoder_level"):
            row[f"mismatch_{name}"] = mismatch.get(name)
        row.update(_risk_columns(cell))
        writer.writerow({name: _cell_text(value) for name, value in row.items()})
    return buffer.getvalue()


def _risk_columns(cell: dict[str, Any]) -> dict[str, Any]:
    risk, drift = cell["risk"], cell["drift"]
    columns = {name: risk[name] for name in RISK_FIELDS}
    columns["risk"] = risk["basis"]
    columns["hs_max_ulp"] = drift.get("h_s", {}).get("max_ulp")
    columns["hs_fraction_differing"] = drift.get("h_s", {}).get("fraction")
    columns["y_max_ulp"] = drift.get("y", {}).get("max_ulp")
    columns["recon_max_abs_diff"] = drift.get("recon", {}).get("max_abs_diff")
    return columns


def _cell_text(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP's CSV advice)."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def to_junit(session: Session, job: Job) -> str:
    """JUnit XML valid against the common junit-10 schema (the one Jenkins' xUnit plugin ships): one suite
    per codec, its run's facts as suite properties, one testcase per cell with the cell's figures as
    `key: value` lines in its system-out (the schema has no per-testcase properties)."""
    cells = queries.cell_rows(session, job.id)
    root = ET.Element("testsuites", name=f"bitmatch job {job.id}")
    by_codec: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_codec.setdefault(cell["codec_name"], []).append(cell)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    summary = queries.job_summary(session, job)
    for codec_name, codec_cells in by_codec.items():
        suite = ET.SubElement(root, "testsuite", name=codec_name)
        _suite_properties(suite, summary, codec_cells[0])
        counts = {"tests": len(codec_cells), "failures": 0, "errors": 0, "skipped": 0}
        for cell in codec_cells:
            kind = _add_testcase(suite, cell)
            if kind:
                counts[kind] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            if key in totals:
                totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite_properties(suite: ET.Element, summary: dict[str, Any], cell: dict[str, Any]) -> None:
    properties = ET.SubElement(suite, "properties")
    facts = {
        "job": summary["id"],
        "series": summary.get("series"),
        "label": summary.get("label"),
        "codec": cell["codec"],
        "precision": cell["precision"],
    }
    for name, value in facts.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=_property_text(value))


def case_facts(cell: dict[str, Any]) -> dict[str, Any]:
    """What a testcase's system-out says of its cell, in order."""
    facts: dict[str, Any] = {"verdict": cell["verdict"]}
    if cell.get("y_hat_max_abs_diff") is not None:
        facts["y_hat_max_abs_diff"] = cell["y_hat_max_abs_diff"]
    facts.update((k, v) for k, v in _risk_columns(cell).items() if v is not None)
    if cell.get("silent_corruption"):
        facts["silent_corruption"] = True
    if cell.get("detail"):
        facts["detail"] = cell["detail"]
    return facts


def _add_testcase(suite: ET.Element, cell: dict[str, Any]) -> str:
    """Append one testcase; returns "failures", "errors" or "" (passed)."""
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"{cell['codec_name']}.{cell['image_name']}",
        name=f"{cell['encoder']} -> {cell['decoder']}",
    )
    verdict = cell["verdict"]
    message = f"{verdict}: {cell['detail']}".strip(": ")
    kind = ""
    if verdict in JUNIT_ERRORS:
        ET.SubElement(case, "error", type=verdict, message=message)
        kind = "errors"
    elif verdict not in verdicts.PASSING:
        failure = ET.SubElement(case, "failure", type=verdict, message=message)
        if cell["mismatch"]:
            failure.text = json.dumps(cell["mismatch"], sort_keys=True)
        kind = "failures"
    elif cell["nondeterministic"]:
        ET.SubElement(case, "failure", type="nondeterministic", message=cell["nondeterminism_detail"])
        kind = "failures"
    lines = [f"{name}: {_property_text(value)}" for name, value in case_facts(cell).items()]
    ET.SubElement(case, "system-out").text = "\n".join(lines)
    return kind


def _property_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)
