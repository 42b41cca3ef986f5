"""Packages in each h_s lowering: one integer network, so identical stages, and each other's bitstreams."""

import json

import numpy as np
import pytest

from codec import networks
from codec.build import build_random
from codec.codec import Codec
from codec.errors import PackageError
from codec.package import CodecPackage
from codec.vocabulary import Lowering

N, M, SEED = 4, 6, 5


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("lowered")
    for lowering in Lowering:
        build_random(root / lowering, "int16", N, M, SEED, lowering=lowering)
    return {lowering: root / lowering for lowering in Lowering}


def _image() -> np.ndarray:
    return np.ascontiguousarray(networks.synthetic_images(2, 1, 48)[0][:40, :48])


def test_manifest_and_certificate_name_the_lowering(packages):
    for lowering, path in packages.items():
        package = CodecPackage.load(path)
        certificate = json.loads(package.read("certificate.json"))
        if lowering == Lowering.FLOAT64:  # as every package before the digit lowerings
            assert "hs_lowering" not in package.manifest and "lowering" not in certificate
        else:
            assert package.manifest["hs_lowering"] == certificate["lowering"] == lowering
    assert len({CodecPackage.load(path).digest for path in packages.values()}) == len(Lowering)


@pytest.mark.parametrize("lowering", [Lowering.INT8_DIGITS, Lowering.UINT8_DIGITS])
def test_a_float64_bitstream_decodes_identically_with_a_digit_lowering(packages, lowering):
    image = _image()
    encoded = Codec.load(packages[Lowering.FLOAT64], "ort-cpu").encode(image)
    again = Codec.load(packages[lowering], "onnx-ref").encode(image)
    assert again.stage_hashes == encoded.stage_hashes
    decoded = Codec.load(packages[lowering], "ort-cpu-1t").decode(encoded.bitstream, allow_foreign=True)
    assert decoded.stage_hashes == encoded.stage_hashes


def test_only_int16_packages_take_a_digit_lowering(tmp_path):
    with pytest.raises(PackageError, match="int16"):
        build_random(tmp_path / "p", "int8", N, M, SEED, lowering=Lowering.INT8_DIGITS)
