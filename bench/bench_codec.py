"""Encode + decode time of the bitmatch codec against CompressAI's bmshj2018 hyperprior, measured in one run.

    .venv/bin/python bench/bench_codec.py [--json] [--repeats R]

Workload: one deterministic synthetic 768x512 RGB image (codec.networks.synthetic_images).

- bitmatch: a random-weight package with N=128, M=192 (`build_random`, seed 0), int16 h_s, runtime
  `ort-cpu-1t`; `bitmatch_ms` is the best of R runs of `Codec.encode` followed by `Codec.decode` (after one
  warm-up run, which also compiles the numba rANS kernels).
- `int16_hs_ms` / `float_hs_ms`: one h_s session run on that image's z_hat (ort-cpu-1t), best of 5R, for the
  int16 package and its float twin (same weights).
- CompressAI: `bmshj2018-hyperprior` at quality 3 (ScaleHyperprior, N=128, M=192), random init, eval mode,
  `torch.set_num_threads(1)`; `compressai_ms` is the best of R runs of `compress` followed by `decompress`.
  It runs as a subprocess in the bench-only venv that bench/bench_rans.py provisions (bench/.venv-compressai);
  this script adds the two pure-Python modules compressai's model code imports (scipy, einops) if missing, and
  imports compressai's model modules without its package `__init__` (which pulls in torchvision and
  torch_geometric) by registering the package and a no-op registry first.

Targets (issue 3): bitmatch_ms <= 0.8 x compressai_ms; int16_hs_ms <= 3 x float_hs_ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, N, M, SEED = 768, 512, 128, 192, 0
MODEL_DEPS = {"scipy": "scipy", "einops": "einops"}


def _best_ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


# --- CompressAI half: runs inside the bench venv (no project imports there) ---


def _import_compressai_models():  # type: ignore[no-untyped-def]
    import site
    import types

    root = next(
        Path(folder) / "compressai"
        for folder in site.getsitepackages()
        if (Path(folder) / "compressai").is_dir()
    )
    package = types.ModuleType("compressai")
    package.__path__ = [str(root)]  # type: ignore[attr-defined]
    package.get_entropy_coder = lambda: "ans"  # type: ignore[attr-defined]
    package.available_entropy_coders = lambda: ["ans"]  # type: ignore[attr-defined]
    registry = types.ModuleType("compressai.registry")
    for name in (
        "register_model",
        "register_module",
        "register_transform",
        "register_criterion",
        "register_optimizer",
        "register_scheduler",
        "register_dataset",
    ):
        setattr(registry, name, lambda *args, **kwargs: lambda cls: cls)
    sys.modules["compressai"], sys.modules["compressai.registry"] = package, registry
    from compressai.models.google import ScaleHyperprior

    return ScaleHyperprior


def compressai_worker(image_path: str, repeats: int) -> dict[str, object]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    scale_hyperprior = _import_compressai_models()
    net = scale_hyperprior(N, M).eval()  # bmshj2018-hyperprior, quality 3: N=128, M=192
    net.update(force=True)
    image = np.load(image_path)
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    sizes: list[int] = []

    def round_trip() -> None:
        with torch.no_grad():
            coded = net.compress(x)
            net.decompress(coded["strings"], coded["shape"])
        sizes.append(sum(len(s[0]) for s in coded["strings"]))

    round_trip()  # warm-up
    return {
        "compressai_ms": _best_ms(round_trip, repeats),
        "compressai_bytes": sizes[-1],
        "torch": torch.__version__,
    }


def _bench_python() -> Path:
    return ROOT / "bench" / ".venv-compressai" / "bin" / "python"


def provision() -> None:
    """The bench venv of bench_rans.py, plus the modules compressai's model code imports."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_rans import provision_bench_venv

    provision_bench_venv()
    python = str(_bench_python())
    for module, requirement in MODEL_DEPS.items():
        if subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode != 0:
            # numpy stays below 2: the venv's torch build and compressai's extension need it
            subprocess.run(
                [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement, "numpy<2"],
                check=True,
                stdout=sys.stderr,
            )


def run_compressai(image: np.ndarray, repeats: int) -> dict[str, object]:
    provision()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, image)
        cmd = [str(_bench_python()), __file__, "--compressai-worker", str(path), "--repeats", str(repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"CompressAI worker failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- bitmatch half ---


def bench_image() -> np.ndarray:
    from codec.networks import synthetic_images

    return np.ascontiguousarray(synthetic_images(SEED, 1, WIDTH)[0][:HEIGHT])


def run_bitmatch(image: np.ndarray, repeats: int, workdir: Path) -> dict[str, object]:
    from codec.build import build_random
    from codec.codec import Codec

    build_start = time.perf_counter()
    for precision in ("int16", "float"):
        build_random(workdir / precision, precision, N, M, SEED)
    build_s = time.perf_counter() - build_start
    codec = Codec.load(workdir / "int16", "ort-cpu-1t")
    first = codec.encode(image)
    decoded = codec.decode(first.bitstream)
    if decoded.stage_hashes != first.stage_hashes:
        raise RuntimeError("bitmatch round trip changed a stage hash")
    bitmatch_ms = _best_ms(lambda: codec.decode(codec.encode(image).bitstream), repeats)
    z_hat = _z_hat(codec, image)
    hs_ms = {}
    for precision in ("int16", "float"):
        session = Codec.load(workdir / precision, "ort-cpu-1t")._hyper
        session.run({"z_hat": z_hat})
        hs_ms[precision] = _best_ms(lambda s=session: s.run({"z_hat": z_hat}), 5 * repeats)
    return {
        "bitmatch_ms": bitmatch_ms,
        "bitmatch_bytes": len(first.bitstream),
        "bitmatch_bpp": first.bpp,
        "bitmatch_encode_stages_ms": first.timings,
        "int16_hs_ms": hs_ms["int16"],
        "float_hs_ms": hs_ms["float"],
        "build_s": build_s,
    }


def _z_hat(codec, image: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    from codec.networks import pad_image

    z = codec._analysis.run({"x": pad_image(image)})["z"]
    return np.rint(z).astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compressai-worker", metavar="NPY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compressai_worker:
        print(json.dumps(compressai_worker(args.compressai_worker, args.repeats)))
        return
    sys.path.insert(0, str(ROOT))
    image = bench_image()
    with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
        result = run_bitmatch(image, args.repeats, Path(tmp))
    result.update(run_compressai(image, args.repeats))
    result["bitmatch_vs_compressai"] = result["bitmatch_ms"] / result["compressai_ms"]  # type: ignore[operator]
    result["int16_vs_float_hs"] = result["int16_hs_ms"] / result["float_hs_ms"]  # type: ignore[operator]
    result.update(
        image=f"{WIDTH}x{HEIGHT}",
        channels=f"{N},{M}",
        runtime="ort-cpu-1t",
        precision="int16",
        targets={"bitmatch_vs_compressai": 0.8, "int16_vs_float_hs": 3.0},
    )
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
        return
    print(f"bitmatch   {result['bitmatch_ms']:9.1f} ms  ({result['bitmatch_bytes']} bytes)")
    print(f"CompressAI {result['compressai_ms']:9.1f} ms  ({result['compressai_bytes']} bytes)")
    print(f"ratio      {result['bitmatch_vs_compressai']:9.3f}   (target <= 0.8)")
    print(
        f"h_s int16  {result['int16_hs_ms']:9.2f} ms, float {result['float_hs_ms']:.2f} ms, "
        f"ratio {result['int16_vs_float_hs']:.2f} (target <= 3)"
    )


if __name__ == "__main__":
    main()
