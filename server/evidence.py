"""The shipped RD evidence (`packages/rd.json`, written by `bitmatch codec eval`, codec/train/evaluate.py):
read and validated, every family named readably, for the dashboard's RD evidence page.

A file that is missing or does not hold the evaluation report is an `EvidenceError` with a one-line reason.
"""

import json
import re
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from codec.vocabulary import Anchor

RATE_POINT_DIR = re.compile(r"(?:^|/)q(\d+)(?:/|$)")


class EvidenceError(ValueError):
    """The evidence file is missing or is not an evaluation report."""


class EvidencePoint(BaseModel):
    bpp: float
    psnr: float
    ms_ssim: float
    package: str | None = None
    digest: str | None = None
    quality: int | None = None


class EvidenceFamily(BaseModel):
    rd_points: list[EvidencePoint] = Field(min_length=1)


class EvidenceBd(BaseModel):
    bd_rate_pct: float | None = None
    bd_rate_pct_akima: float | None = None
    bd_psnr_db: float | None = None
    bd_psnr_db_akima: float | None = None
    bd_rate_ms_ssim_pct: float | None = None
    error: str | None = None


class EvidenceImages(BaseModel):
    images: int
    pixels: int


class Evidence(BaseModel):
    packages: dict[str, EvidenceFamily] = Field(min_length=1)
    bd_rate: dict[str, EvidenceBd]
    test_set: EvidenceImages


def load(path: Path) -> Evidence:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise EvidenceError(f"{path}: no such file (bitmatch codec eval --json writes it)") from None
    except OSError as exc:
        raise EvidenceError(f"{path}: unreadable: {exc.strerror or exc}") from None
    try:
        return Evidence.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise EvidenceError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise EvidenceError(f"{path}: not an evaluation report: {where}: {first['msg']}") from None


def family_label(name: str, family: EvidenceFamily) -> str:
    """`bitmatch-int16 (q1..q4)` from the packages' rate-point directories, `JPEG (q=5..90)` for an anchor."""
    qualities = [p.quality for p in family.rd_points if p.quality is not None]
    if name in tuple(Anchor) and len(qualities) == len(family.rd_points):
        return f"{Anchor(name).title} (q={min(qualities)}..{max(qualities)})"
    points = [_rate_point(p.package) for p in family.rd_points]
    if all(point is not None for point in points):
        points.sort()
        span = f"q{points[0]}" if len(points) == 1 else f"q{points[0]}..q{points[-1]}"
        return f"{name} ({span})"
    return f"{name} ({len(points)} points)"


def comparison_sides(key: str, names: list[str]) -> tuple[str, str] | None:
    """The (test, anchor) family names of a BD key such as `int16_vs_float` (`bitmatch-int16` vs
    `bitmatch-float`), or None when they name no family of the report."""
    test, separator, anchor = key.partition("_vs_")
    if not separator:
        return None
    resolved = [_family_name(side, names) for side in (test, anchor)]
    return (resolved[0], resolved[1]) if None not in resolved else None


def _family_name(side: str, names: list[str]) -> str | None:
    return next((n for n in names if n == side or n.endswith(f"-{side}")), None)


def _rate_point(package: str | None) -> int | None:
    match = RATE_POINT_DIR.search(package or "")
    return int(match.group(1)) if match else None
