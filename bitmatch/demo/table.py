"""The demo's verdict matrix on the terminal: encoder rows x decoder columns with one mark per image, the
legend of the marks, and the verdict counts per codec (in the order of `Verdict`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from codec.vocabulary import Verdict

VERDICT_ORDER = tuple(Verdict)
PENDING = "pending"  # a matrix position no cell has reached yet
VERDICT_MARKS = {
    Verdict.BIT_EXACT: "=",
    Verdict.LATENT_EXACT: "~",
    Verdict.SYMBOL_EXACT: "s",
    Verdict.DESYNC: "X",
    Verdict.ERROR: "E",
    Verdict.TIMEOUT: "T",
    Verdict.WORKER_LOST: "L",
    Verdict.NOT_RUN: "-",
    PENDING: "?",
}


def verdict_counts(matrices: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for matrix in matrices:
        total: Counter[str] = Counter()
        for row in matrix["rows"]:
            for position in row:
                total.update(position["counts"])
        counts[matrix["codec_name"]] = dict(sorted(total.items(), key=lambda kv: verdict_rank(kv[0])))
    return counts


def verdict_rank(verdict: str) -> int:
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)


def summed_counts(per_job: Iterator[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for counts in per_job:
        for name, by_verdict in counts.items():
            total.setdefault(name, Counter()).update(by_verdict)
    return {
        name: dict(sorted(counter.items(), key=lambda kv: verdict_rank(kv[0])))
        for name, counter in total.items()
    }


def matrix_text(matrix: dict[str, Any]) -> str:
    """Encoder rows x decoder columns; each position lists its per-image verdicts as one mark each."""
    decoders = matrix["decoders"]
    row_width = max(len("encoder \\ decoder"), *(len(e) for e in matrix["encoders"]))
    marks = [
        [
            "".join(
                VERDICT_MARKS.get(c["verdict"], "?") + ("!" if c["nondeterministic"] else "")
                for c in position["cells"]
            )
            or VERDICT_MARKS[PENDING]
            for position in row
        ]
        for row in matrix["rows"]
    ]
    widths = [max(len(d), *(len(r[i]) for r in marks)) for i, d in enumerate(decoders)]
    lines = [
        f"{matrix['codec_name']}:",
        "  "
        + "encoder \\ decoder".ljust(row_width)
        + "  "
        + "  ".join(d.ljust(w) for d, w in zip(decoders, widths, strict=True)),
    ]
    for encoder, row in zip(matrix["encoders"], marks, strict=True):
        lines.append(
            "  "
            + encoder.ljust(row_width)
            + "  "
            + "  ".join(m.ljust(w) for m, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def legend() -> str:
    shown = ", ".join(f"{mark} {verdict}" for verdict, mark in VERDICT_MARKS.items() if verdict != PENDING)
    return f"  one mark per image: {shown}; ! nondeterministic"
