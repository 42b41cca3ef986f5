"""Codec names on the dashboard and in reports: a package's family and variant are in its label."""

import json
from pathlib import Path

import pytest

from server.catalog import codec_label

PACKAGES = Path(__file__).resolve().parents[2] / "packages"


@pytest.mark.parametrize(
    ("family", "label"),
    [
        ("int16", "int16-"),
        ("int16-full", "int16-full-"),
        ("lowcomplexity", "lowcomplexity-int16-full-"),
        ("lowcomplexity-nocontext", "lowcomplexity-nocontext-int16-full-"),
    ],
)
def test_a_label_names_family_precision_and_digest(family, label):
    manifest = json.loads((PACKAGES / family / "q2" / "manifest.json").read_text())
    assert codec_label(manifest, manifest["digest"]) == label + manifest["digest"][:8]


def test_a_manifest_name_wins():
    assert codec_label({"name": "mine", "precision": "int16"}, "0" * 64) == "mine"
