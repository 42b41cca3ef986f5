"""Training and export of the lowcomplexity family (codec/train/lowcx.py) on a few random crops."""

from pathlib import Path

import numpy as np
import pytest

from codec import networks
from codec.codec import Codec
from codec.package import CodecPackage

torch = pytest.importorskip("torch")

from codec.train import lowcx  # noqa: E402  (needs torch)
from codec.train import train as loop  # noqa: E402
from codec.train.factorized import FactorizedCodec, factorized_loss  # noqa: E402


def _crops(count: int = 6) -> np.ndarray:
    images = networks.synthetic_images(2, count, 64)
    return np.stack(images).astype(np.uint8)


def test_factorized_model_matches_the_package_architecture() -> None:
    model = FactorizedCodec(lowcx.ARCH)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out["x_hat"].shape == x.shape and out["y_likelihood"].shape == (2, lowcx.ARCH.m, 4, 4)
    terms = factorized_loss(out, x, 0.01)
    assert torch.isfinite(terms["loss"]) and terms["bpp"] > 0
    networks.check_weights(lowcx.ARCH, model.float_weights())
    with pytest.raises(ValueError):
        FactorizedCodec(networks.Architecture(n=8, m=8))


def test_a_few_steps_train_export_and_round_trip(tmp_path: Path) -> None:
    crops = _crops()
    schedule = loop.Schedule(steps=3, lr=1e-3, batch=2)
    lowcx.train_base((crops, np.full(len(crops), 1 / len(crops))), 0, tmp_path, schedule)
    model, _ = loop.load_checkpoint(lowcx.base_path(tmp_path))
    assert isinstance(model, FactorizedCodec)
    lowcx.finetune((crops, np.full(len(crops), 1 / len(crops))), 0, tmp_path, 2, schedule)
    rows = lowcx.export_rate_point(crops, tmp_path, tmp_path / "out", 2, precision="float")
    assert [row["name"] for row in rows] == ["lowcomplexity/q2", "lowcomplexity-nocontext/q2"]
    for name in lowcx.VARIANTS:
        package = CodecPackage.load(tmp_path / "out" / name / "q2")
        assert package.manifest["training"]["lambda"] == lowcx.LAMBDAS[1]
        codec = Codec.load(tmp_path / "out" / name / "q2")
        encoded = codec.encode(crops[0])
        assert codec.decode(encoded.bitstream).stage_hashes == encoded.stage_hashes
