"""A job's codec packages grouped into rate families by their manifests, with readable names.

A family is the packages of one lineage (network architecture, weights, seed, training) and one precision;
its members are its rate points (the manifest's `rate_point`, q1 = lowest rate), e.g. the shipped
`packages/int16/q1..q4` are the family `int16 (q1..q4)`. Twins are the families of one lineage that differ
only in precision: the int16 and int8 families are compared with their float twin.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from codec.vocabulary import Precision
from server.models import Codec

LINEAGE_FIELDS = ("weights", "seed", "training")
PRECISION_ORDER = {precision: index for index, precision in enumerate(Precision)}

Lineage = tuple[Any, ...]


@dataclass(frozen=True)
class Family:
    label: str  # "int16 (q1..q4)", "float q2", "mbt2018-mean int8 (4 rate points)"
    lineage: Lineage
    precision: str
    codec_ids: tuple[int, ...]  # lowest rate point first
    point_labels: tuple[str, ...]  # one per codec: "int16 q1", or the package's name

    @property
    def size(self) -> int:
        return len(self.codec_ids)


def lineage(codec: Codec) -> Lineage:
    manifest = codec.manifest or {}
    return (codec.architecture, *(_hashable(manifest.get(key)) for key in LINEAGE_FIELDS))


def group(codecs: Iterable[Codec]) -> list[Family]:
    """The families of these packages, by lineage then precision (float, int16, int8)."""
    members: dict[tuple[Lineage, str], list[Codec]] = defaultdict(list)
    for codec in codecs:
        members[(lineage(codec), codec.precision)].append(codec)
    lineages = {key[0]: codecs[0] for key, codecs in members.items()}
    prefixes = _lineage_prefixes(lineages) if len(lineages) > 1 else dict.fromkeys(lineages, "")
    families = [
        _family(line, precision, sorted(found, key=_rate_order), prefixes[line])
        for (line, precision), found in members.items()
    ]
    return sorted(families, key=lambda f: (prefixes[f.lineage], PRECISION_ORDER.get(f.precision, 9), f.label))


def twins(families: list[Family], family: Family) -> list[Family]:
    """The float families of `family`'s lineage (none when `family` is itself float)."""
    if family.precision == Precision.FLOAT:
        return []
    return [f for f in families if f.lineage == family.lineage and f.precision == Precision.FLOAT]


def _family(line: Lineage, precision: str, codecs: list[Codec], prefix: str) -> Family:
    base = f"{prefix}{precision or 'codec'}"
    points = [_rate_point(codec) for codec in codecs]
    if all(point is not None for point in points):
        point_labels = tuple(f"{base} q{point}" for point in points)
        label = point_labels[0] if len(points) == 1 else f"{base} ({_span(points)})"
    else:
        point_labels = tuple(codec.name for codec in codecs)
        label = base if len(codecs) == 1 else f"{base} ({len(codecs)} rate points)"
    return Family(label, line, precision, tuple(c.id for c in codecs), point_labels)


def _span(points: list[int]) -> str:
    """q1..q4 for a contiguous run, q1, q3 otherwise."""
    if points == list(range(points[0], points[0] + len(points))):
        return f"q{points[0]}..q{points[-1]}"
    return ", ".join(f"q{point}" for point in points)


def _lineage_prefixes(lineages: dict[Lineage, Codec]) -> dict[Lineage, str]:
    """A short name per lineage, told apart by its architecture key where the names collide."""
    names = {line: _lineage_name(codec) for line, codec in lineages.items()}
    counts = defaultdict(int)
    for name in names.values():
        counts[name] += 1
    return {
        line: f"{name} {line[0][:8]} " if counts[name] > 1 else f"{name} " for line, name in names.items()
    }


def _lineage_name(codec: Codec) -> str:
    manifest = codec.manifest or {}
    architecture = manifest.get("architecture")
    if isinstance(architecture, dict) and isinstance(architecture.get("name"), str):
        return architecture["name"]  # imported: mbt2018-mean, bmshj2018-hyperprior
    if manifest.get("weights") == "trained":
        return "bitmatch"
    if manifest.get("weights") == "random" and manifest.get("seed") is not None:
        return f"random seed {manifest['seed']}"
    return codec.architecture[:12]


def _rate_point(codec: Codec) -> int | None:
    value = (codec.manifest or {}).get("rate_point")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rate_order(codec: Codec) -> tuple[int, str]:
    point = _rate_point(codec)
    return (point if point is not None else 0, codec.name)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
