"""`bitmatch import compressai` against CompressAI itself (its own model code, run in the same test).

The checkpoints in tests/data/compressai/ are real CompressAI models trained briefly here (make_checkpoints.py
beside them), saved as users save them. The float package must agree with CompressAI's compress() and
decompress() element for element except where float drift between ONNX Runtime and PyTorch can explain a
difference; the int16 package must cost at most 0.5 % BD-rate against it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitmatch.cli import cli
from codec import bitstream, networks
from codec.codec import Codec
from codec.importers import calibration
from codec.importers.compressai import ARCHITECTURES, build_packages, read_checkpoint
from codec.importers.torchfile import CheckpointError, load_checkpoint
from codec.metrics import psnr
from codec.resources import image_set
from codec.train import evaluate
from tests.compressai_loader import model_class

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "compressai"
RATES = (1, 2, 3, 4)
DRIFT = 1e-4  # largest float drift between ONNX Runtime and PyTorch that explains a difference
COMPARED_RATE = 2

pytestmark = pytest.mark.slow


def checkpoint(arch: str, rate: int) -> Path:
    return CHECKPOINTS / f"{arch}-q{rate}.pth"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Path]:
    """Every committed checkpoint imported in all three precisions: ROOT/ARCH/qI/PRECISION."""
    root = tmp_path_factory.mktemp("imported")
    images, name = calibration.images(None)
    for arch in ARCHITECTURES:
        for rate in RATES:
            build_packages(
                read_checkpoint(checkpoint(arch, rate), arch), root / arch / f"q{rate}", images, name
            )
    return {arch: root / arch for arch in ARCHITECTURES}


def _compressai(arch: str, rate: int) -> torch.nn.Module:
    state = torch.load(checkpoint(arch, rate), map_location="cpu", weights_only=True)
    return model_class(arch).from_state_dict(state).eval()


def _reference(net: torch.nn.Module, arch: str, image: np.ndarray) -> dict[str, np.ndarray]:
    """CompressAI's compress() and decompress(), and the tensors of its entropy path."""
    x = torch.from_numpy(networks.pad_image(image))
    with torch.no_grad():
        coded = net.compress(x)
        x_hat = net.decompress(coded["strings"], coded["shape"])["x_hat"].numpy()
        y = net.g_a(x)
        z = net.h_a(torch.abs(y) if arch == "bmshj2018-hyperprior" else y)
        z_hat = net.entropy_bottleneck.decompress(coded["strings"][1], coded["shape"])
        params = net.h_s(z_hat)
        scales, means = params.chunk(2, 1) if arch == "mbt2018-mean" else (params, None)
        index = net.gaussian_conditional.build_indexes(scales)
        y_hat = net.gaussian_conditional.decompress(coded["strings"][0], index, means=means)
    zero = torch.zeros_like(y)
    return {
        "y": y.numpy(),
        "z": z.numpy(),
        "z_hat": z_hat.numpy(),
        "median": net.entropy_bottleneck._get_medians().detach().numpy(),
        "scale": scales.numpy(),
        "mean": (means if means is not None else zero).numpy(),
        "index": index.numpy(),
        "y_hat": y_hat.numpy(),
        "x_hat": x_hat,
        "bytes": sum(len(s[0]) for s in coded["strings"]),
        "table": net.gaussian_conditional.scale_table.numpy(),
    }


def _near_rounding(values: np.ndarray) -> np.ndarray:
    return np.abs(np.abs(values - np.floor(values)) - 0.5) <= DRIFT


def _near_threshold(scales: np.ndarray, table: np.ndarray) -> np.ndarray:
    s = np.maximum(scales, 0.11)
    return (np.abs(s[..., None] - table[None, :-1]) <= DRIFT * np.maximum(table[None, :-1], 1)).any(-1)


def _explained(ours, ref: dict[str, np.ndarray], analysis: dict[str, np.ndarray]) -> np.ndarray:
    """Per latent element: a difference there sits within DRIFT of a rounding or index boundary, on either
    side, or lies below a z element that flipped at its own rounding boundary."""
    z_flips = ours.z_hat != ref["z_hat"]
    near_z = _near_rounding(ref["z"] - ref["median"].reshape(1, -1, 1, 1))
    assert np.all(near_z[z_flips]), "a z_hat difference no float drift explains"
    y_ref, y_ours = ref["y"] - ref["mean"], analysis["y"] - ours.mean
    near = _near_rounding(y_ref) | _near_rounding(y_ours) | _near_threshold(ref["scale"], ref["table"])
    return near | bool(z_flips.any())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_float_package_agrees_with_compressai(imported, arch):
    """On every test image and two Kodak-size ones: >= 99.9 % of latent elements identical (scale index and
    symbol equal, y_hat within the float drift), every other one within DRIFT of a boundary; payload bpp
    within 1 %, PSNR within 0.05 dB."""
    net = _compressai(arch, COMPARED_RATE)
    codec = Codec.load(imported[arch] / f"q{COMPARED_RATE}" / "float", "ort-cpu")
    analysis_session = codec._analysis
    images = [image for _, image in evaluate.load_testset(image_set("testset"))]
    images += [image for _, image in evaluate.load_testset(image_set("kodak"))][:2]
    total = agree = 0
    for image in images:
        ref = _reference(net, arch, image)
        result = codec.encode(image)
        ours = result.latents
        analysis = analysis_session.run({"x": networks.pad_image(image)})
        same = (
            (ours.scale_index == ref["index"])
            & (ours.symbols == np.rint(ref["y_hat"] - ref["mean"]))
            & (np.abs(ours.y_hat - ref["y_hat"]) <= DRIFT)
        )
        assert np.all(same | _explained(ours, ref, analysis)), "a difference no float drift explains"
        total, agree = total + same.size, agree + int(same.sum())
        payload = sum(len(s) for s in bitstream.unpack(result.bitstream).sections.values())
        assert abs(payload / ref["bytes"] - 1) <= 0.01, (payload, ref["bytes"])
        reference_recon = networks.to_uint8_image(ref["x_hat"], *image.shape[:2])
        assert abs(result.psnr - psnr(image, reference_recon)) <= 0.05
    assert agree / total >= 0.999, f"{agree} of {total} elements agree"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_int16_costs_at_most_half_a_percent_against_the_float_package(imported, arch):
    images = evaluate.load_testset(image_set("testset"))
    curves = {
        precision: [evaluate.codec_point(imported[arch] / f"q{rate}" / precision, images) for rate in RATES]
        for precision in ("float", "int16")
    }
    bd = evaluate._bd(curves["float"], curves["int16"])
    assert bd["bd_rate_pct"] <= 0.5, bd


def _run(*args: str):
    return CliRunner().invoke(cli, ["import", "compressai", *args])


def test_the_command_imports_both_layouts_to_the_same_packages(tmp_path):
    """A plain state dict and the zoo's {"state_dict": ...} layout with optimizer state give the same files;
    only the manifest's record of the source (the checkpoint file's SHA-256) differs."""
    arch = "mbt2018-mean"
    state = torch.load(checkpoint(arch, 1), map_location="cpu", weights_only=True)
    zoo = tmp_path / "zoo.pth.tar"
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    torch.save({"epoch": 7, "state_dict": state, "optimizer": optimizer.state_dict()}, zoo)
    files = []
    for path, out in ((checkpoint(arch, 1), tmp_path / "plain"), (zoo, tmp_path / "zoo")):
        result = _run(str(path), "--arch", arch, "--out", str(out), "--precision", "int16", "--json")
        assert result.exit_code == 0, result.output
        files.append(Codec.load(out / "int16").package.manifest["files"])
    assert files[0] == files[1]
    manifest = Codec.load(tmp_path / "plain" / "int16").package.manifest
    assert manifest["source"]["architecture"] == arch and manifest["source"]["compressai_version"] == "1.2.8"
    assert len(manifest["source"]["checkpoint_sha256"]) == 64


def _save(tmp_path: Path, state: dict, name: str = "bad.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def _state(arch: str = "mbt2018-mean") -> dict:
    return dict(torch.load(checkpoint(arch, 1), map_location="cpu", weights_only=True))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.pop("h_s.2.weight"), "h_s.2.weight"),
        (lambda s: s.__setitem__("g_s.0.weight", torch.zeros(3, 3, 5, 5)), "g_s.0.weight"),
        (lambda s: s.__setitem__("g_a.1.gamma", torch.zeros(7)), "g_a.1.gamma"),
        (lambda s: s.__setitem__("context_prediction.weight", torch.zeros(1)), "context_prediction.weight"),
        (
            lambda s: s.__setitem__("entropy_bottleneck._quantized_cdf", torch.zeros(0, dtype=torch.int32)),
            "update(force=True)",
        ),
    ],
)
def test_a_wrong_checkpoint_is_one_line_naming_the_key(tmp_path, change, named):
    state = _state()
    change(state)
    out = tmp_path / "out"
    result = _run(str(_save(tmp_path, state)), "--arch", "mbt2018-mean", "--out", str(out))
    assert result.exit_code == 1 and named in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_the_wrong_architecture_or_an_unknown_one_is_refused(tmp_path):
    result = _run(
        str(checkpoint("mbt2018-mean", 1)), "--arch", "bmshj2018-hyperprior", "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 1 and "h_s." in result.output, result.output
    result = _run(
        str(checkpoint("mbt2018-mean", 1)), "--arch", "cheng2020-anchor", "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2 and "--arch" in result.output
    with pytest.raises(CheckpointError, match="unknown architecture"):
        read_checkpoint(checkpoint("mbt2018-mean", 1), "cheng2020-anchor")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path, capsys):
    path = _save(tmp_path, {"g_a.0.weight": torch.zeros(1), "trap": _Payload()})
    with pytest.raises(CheckpointError, match=r"__builtin__\.print"):
        load_checkpoint(path)
    assert "this must never run" not in capsys.readouterr().out
    (tmp_path / "not-a-zip.pth").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"not a torch\.save archive"):
        load_checkpoint(tmp_path / "not-a-zip.pth")


def test_tensors_read_without_torch_equal_torch_load(tmp_path):
    path = checkpoint("bmshj2018-hyperprior", 1)
    ours = load_checkpoint(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.numpy().dtype and np.array_equal(ours[name], tensor.numpy()), name
    views = {
        "strided": torch.arange(12.0).reshape(3, 4).t()[1:],
        "scalar": torch.tensor(3, dtype=torch.int64),
        "half": torch.ones(2, 2, dtype=torch.float16),
    }
    saved = _save(tmp_path, views, "views.pth")
    for name, value in load_checkpoint(saved).items():
        assert np.array_equal(value, views[name].numpy()) and value.dtype == views[name].numpy().dtype, name


CROSS_RUNTIMES = ("ort-cpu-1t", "onnx-ref")


def _tensor_class(encoded, decoded, failed: bool) -> str:
    """The cell's class from the tensors themselves, independently of the stage hashes."""
    if failed:
        return "desync"
    ours, theirs = encoded.latents, decoded.latents
    if any(
        not np.array_equal(getattr(ours, stage), getattr(theirs, stage))
        for stage in ("z_hat", "scale_index", "symbols")
    ):
        return "desync"
    if not np.array_equal(ours.y_hat, theirs.y_hat):
        return "symbol-exact"
    return "bit-exact" if np.array_equal(encoded.recon, decoded.recon) else "latent-exact"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_float_package_across_runtimes_on_kodak_size_images(imported, arch):
    """Encoded on ort-cpu, decoded on ort-cpu-1t and onnx-ref over the Kodak-size set. Each cell's verdict
    (the coordinator's own function, on stage hashes) equals what a direct comparison of the tensors says;
    index flips, symbol flips and mean-drift-only cells are counted both ways and printed."""
    from collections import Counter

    from codec.errors import BitstreamError
    from server.verdicts import Outcome, decide

    package = imported[arch] / f"q{COMPARED_RATE}" / "float"
    encoder = Codec.load(package, "ort-cpu")
    decoders = {runtime: Codec.load(package, runtime) for runtime in CROSS_RUNTIMES}
    by_verdict, by_tensor, flips = Counter(), Counter(), Counter()
    for name, image in evaluate.load_testset(image_set("kodak")):
        encoded = encoder.encode(image)
        for runtime, decoder in decoders.items():
            try:
                decoded, failed = decoder.decode(encoded.bitstream), False
                outcome = Outcome("done", decoded.stage_hashes)
                scale_index = decoded.latents.scale_index
                flips[(runtime, "symbols")] += int((decoded.latents.symbols != encoded.latents.symbols).sum())
            except BitstreamError as exc:
                decoded, failed = None, True
                outcome = Outcome("failed", None, exc.code, str(exc))
                scale_index = decoder.decode_hyper(encoded.bitstream)[1]
            flips[(runtime, "index")] += int((scale_index != encoded.latents.scale_index).sum())
            verdict = decide(Outcome("done", encoded.stage_hashes), outcome).verdict
            expected = _tensor_class(encoded, decoded, failed)
            assert verdict == expected, (name, runtime)
            by_verdict[(runtime, verdict)] += 1
            by_tensor[(runtime, expected)] += 1
    assert by_verdict == by_tensor
    for runtime in CROSS_RUNTIMES:
        cells = {verdict: count for (rt, verdict), count in sorted(by_verdict.items()) if rt == runtime}
        print(
            f"{arch} ort-cpu -> {runtime}: {cells}; index flips {flips[(runtime, 'index')]}, "
            f"symbol flips {flips[(runtime, 'symbols')]}"
        )
