"""codec.train: the bundled test set, export from numpy weights into loadable packages, the RD evaluation,
and (where torch is installed, the [train] extra) a few training steps."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from codec import networks
from codec.codec import Codec
from codec.images import load_png
from codec.resources import image_set
from codec.train import data, evaluate, export

TESTSET = image_set("testset")
ARCH = networks.Architecture(n=4, m=6)


def _manifest() -> dict:
    return json.loads((TESTSET / "manifest.json").read_text())


def test_testset_manifest_matches_the_files():
    manifest = _manifest()
    assert len(manifest["images"]) >= 12
    for entry in manifest["images"] + manifest["demo"]:
        path = TESTSET / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        image = load_png(path)
        assert image.shape == (entry["height"], entry["width"], 3)
    for entry in manifest["images"]:
        assert max(entry["width"], entry["height"]) <= data.TEST_LONG_SIDE
        assert entry["source_package"] and entry["source_version"] and entry["original_file"]
        assert entry["licence"]
    assert len(manifest["demo"]) == 4
    assert all((e["width"], e["height"]) == data.DEMO_SIZE for e in manifest["demo"])


def test_test_images_are_never_training_images():
    test = {(p.package, p.path) for p in data.PHOTOS if p.test}
    train = {(p.package, p.path) for p in data.PHOTOS if not p.test}
    assert len(test) >= 12 and train and not test & train
    shipped = {(e["source_package"], e["original_file"].lstrip("/")) for e in _manifest()["images"]}
    assert shipped == test


def test_crops_cover_the_image_on_a_grid():
    image = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(300, 200, 3).astype(np.uint8)
    cut = data.crops(image, size=128, stride=96)
    assert cut.shape == (3 * 2, 128, 128, 3)
    assert np.array_equal(cut[-1], image[-128:, -128:])
    assert data.crops(image[:100], size=128).shape[0] == 0


def test_jpeg_sources_are_downscaled_at_least_3x():
    from PIL import Image

    small = data.test_image(Image.new("RGB", (600, 400)), "a/b.jpg")
    assert small.size == (200, 133)
    assert data.test_image(Image.new("RGB", (512, 512)), "a/b.png").size == (256, 256)


def test_z_code_vectors_are_distributions_around_the_location():
    pmfs, offsets = export.laplace_code_vectors(np.array([0.0, 3.4, -7.0]), np.log([0.3, 2.0, 1.0]))
    for pmf, offset, loc in zip(pmfs, offsets, (0.0, 3.4, -7.0), strict=True):
        assert pmf.sum() == pytest.approx(1.0) and (pmf > 0).all()
        assert offset + 1 + int(np.argmax(pmf[1:-1])) == round(loc)
    tables = export.z_tables(np.zeros(4), np.zeros(4))
    assert tables.num_tables == 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    weights = networks.random_weights(ARCH, 5)
    meta = {"lambda": 0.01, "seed": 5, "architecture": ARCH.to_dict()}
    export.save_weights(root / "q1.npz", weights, np.zeros(ARCH.n), np.zeros(ARCH.n), meta)
    rows = export.build_rate_point(root / "q1.npz", root / "packages", 1, ("int16", "float"))
    return root, rows


def test_export_builds_loadable_packages_from_numpy_weights(exported):
    root, rows = exported
    assert [row["name"] for row in rows] == ["int16/q1", "float/q1"]
    image = load_png(TESTSET / "demo" / "coffee.png")
    for row in rows:
        codec = Codec.load(root / "packages" / row["name"])
        assert codec.digest == row["digest"]
        assert codec.package.manifest["weights"] == "trained"
        encoded = codec.encode(image)
        assert codec.decode(encoded.bitstream).stage_hashes == encoded.stage_hashes


def test_export_keeps_the_weights_and_the_learned_z_tables(exported):
    root, _ = exported
    arch, weights, z_loc, z_log_scale, _ = export.load_weights(root / "q1.npz")
    assert arch == ARCH
    codec = Codec.load(root / "packages" / "int16" / "q1")
    assert codec.z_model.tables.sha256 == export.z_tables(z_loc, z_log_scale).sha256
    from codec.build import load_weights

    # one copy of the float weights per rate point: in the float twin, not in the integer packages
    assert "weights.npz" not in codec.package.manifest["files"]
    stored = load_weights(Codec.load(root / "packages" / "float" / "q1").package)
    assert all(np.array_equal(stored[name], weights[name]) for name in weights)


def test_evaluate_reports_families_anchors_and_bd_rates(exported, tmp_path):
    root, _ = exported
    testset = tmp_path / "testset"
    shutil.copytree(TESTSET / "demo", testset)
    entries = [{"file": e["file"].removeprefix("demo/")} for e in _manifest()["demo"]]
    (testset / "manifest.json").write_text(json.dumps({"images": entries}))
    report = evaluate.evaluate_shipped(root / "packages", testset)
    assert set(report["packages"]) == {"bitmatch-int16", "bitmatch-float", "jpeg", "webp"}
    assert len(report["packages"]["jpeg"]["rd_points"]) == len(evaluate.JPEG_QUALITIES)
    point = report["packages"]["bitmatch-int16"]["rd_points"][0]
    assert point["bpp"] > 0 and 0 < point["ms_ssim"] <= 1
    assert set(report["bd_rate"]["int16_vs_jpeg"]) == {"error"}  # one rate point: reported, not faked
    curves = report["packages"]
    two = evaluate._bd(curves["jpeg"]["rd_points"][:5], curves["webp"]["rd_points"][:5])
    assert np.isfinite(two["bd_rate_pct"]) and np.isfinite(two["bd_rate_pct_akima"])


def test_a_few_training_steps_reduce_the_loss_and_export(tmp_path):
    import torch  # the [train] extra, installed by make test

    from codec.train import train

    torch.set_num_threads(1)
    crops = np.stack(
        [load_png(TESTSET / "demo" / e["file"].removeprefix("demo/"))[:64, :64] for e in _manifest()["demo"]]
    )
    arch = networks.Architecture(n=4, m=6, transform="gdn")
    model = train.new_model(0, arch)
    rows = train.train(model, crops, 0.01, train.Schedule(steps=12, lr=1e-3, batch=2), seed=0, log_every=4)
    assert rows[-1]["loss"] < rows[0]["loss"]
    again = train.new_model(0, arch)  # same seed, same thread count: the same weights, bit for bit
    train.train(again, crops, 0.01, train.Schedule(steps=12, lr=1e-3, batch=2), seed=0, log_every=4)
    weights = model.float_weights()
    assert all(np.array_equal(weights[name], value) for name, value in again.float_weights().items())
    meta = {"lambda": 0.01, "seed": 0, "architecture": arch.to_dict()}
    export.save_weights(tmp_path / "q1.npz", model.float_weights(), *model.z_prior_params(), meta)
    (row,) = export.build_rate_point(tmp_path / "q1.npz", tmp_path / "packages", 1, ("float",))
    assert Codec.load(tmp_path / "packages" / "float" / "q1").digest == row["digest"]


def test_sigma_of_u_follows_the_ode_mapping():
    import torch

    from codec import scale
    from codec.train.model import SigmaOfU

    u = np.linspace(0.0, 1.0, 37)
    mapped = SigmaOfU(0.11, 256.0)(torch.tensor(u, dtype=torch.float32)).numpy()
    assert np.allclose(mapped, scale.ode_mapping(0.11, 256.0).sigma(u), rtol=2e-3)
