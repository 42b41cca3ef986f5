"""The README's device-target table, rendered from the registry: one row per target that carries a
readme_row, in registration order, with the labels of the targets that join it (readme_row_of)."""

from __future__ import annotations

from worker.targets.base import TARGETS, Target

TABLE_HEADER = ("| target | what runs the codec |", "|---|---|")


def readme_label(cls: type[Target]) -> str:
    return cls.readme_label or f"`{cls.name}`"


def readme_table() -> str:
    """The markdown table of README.md's "Device targets" section, one line per row."""
    labels: dict[str, list[str]] = {}
    for cls in TARGETS.values():
        lead = cls.readme_row_of or cls.name
        if lead not in TARGETS or TARGETS[lead].readme_row is None:
            raise ValueError(f"target {cls.name!r} joins the README row of {lead!r}, which has none")
        labels.setdefault(lead, []).append(readme_label(cls))
    rows = [f"| {', '.join(names)} | {TARGETS[lead].readme_row} |" for lead, names in labels.items()]
    return "\n".join([*TABLE_HEADER, *rows]) + "\n"
