"""Encode + decode time of the bitmatch codec against CompressAI's bmshj2018 hyperprior, like for like.

    .venv/bin/python bench/bench_codec.py [--json] [--repeats R]

Workload: one deterministic synthetic 768x512 RGB image (codec.networks.synthetic_images), the same array on
both sides. Both sides do the same work: CompressAI's `compress` + `decompress` against bitmatch's
`Codec.encode(image, reconstruct=False)` + `Codec.decode`, so g_s runs once on each side. Cases:

- `random`: bitmatch int16, random weights (seed 0), N=128, M=192 with GDN (the `gdn` transform: simplified
  GDN / IGDN after the hidden layers of g_a / g_s), against `bmshj2018-hyperprior` at quality 3
  (ScaleHyperprior, N=128, M=192, GDN), random init.
- `int16-q1` .. `int16-q4`: the shipped trained packages (packages/int16, N=32, M=48, GDN) against
  ScaleHyperprior(N=32, M=48), random init (CompressAI ships no model of that size; its speed does not
  depend on its weights, but for its entropy coder's share).

Runtimes, one thread on both sides: CompressAI on torch with `torch.set_num_threads(1)`, eval mode,
no_grad. bitmatch (`bitmatch`, the `ratio` keys) on the named runtime `ort-cpu-1t` (one intra- and
inter-op thread, graph optimisations off; at 768x512 the codec's sessions keep ORT's CPU memory arena
between runs, codec.family.RETAIN_MEMORY_PIXELS), and two bench-only variants of its sessions that are not
named runtimes: `bitmatch_optimised` with ORT's default graph optimisations (ORT_ENABLE_ALL, as `ort-cpu` has
them; `ort-cpu` itself uses every core, so it is not like for like against one torch thread), and
`bitmatch_lean` without the arena, as the codec runs images over RETAIN_MEMORY_PIXELS (every run faults in
fresh pages: what the arena saves). `--hugepages`
reruns everything, both sides, under GLIBC_TUNABLES=glibc.malloc.hugetlb=1.

Timing: R rounds, each timing one round trip of every case on every side in turn, so load changes hit
the sides alike; each figure is the best round (encode and decode each their own best too), after one
warm-up round trip (which also compiles the numba rANS kernels). Wall clock (`ms`) and process CPU time
(`cpu_ms`; the work is single-threaded, so on a loaded machine CPU time leaves out the waits for the
cores): ratios of both. Each bitmatch case checks its round trip (every stage hash the encoder reports
equals the decoder's).

`int16_hs_ms` / `float_hs_ms`: one h_s session run on the random case's z_hat on `ort-cpu-1t`, best of
5R, for the int16 package and its float twin (same weights).

CompressAI runs as a long-lived subprocess in the bench-only venv that bench/bench_rans.py provisions
(bench/.venv-compressai); this script adds the two pure-Python modules compressai's model code imports (scipy,
einops) if missing, and imports compressai's model modules without its package `__init__` (which pulls in
torchvision and torch_geometric) by registering the package and a no-op registry first.

Targets (issue 15): bitmatch <= 0.8 x CompressAI for every case (`worst`); int16_hs_ms <= 2 x float_hs_ms
(not met: the float64 GEMM has half float32's lanes and the polyphase lowering multiplies 36 taps where the
5x5 ConvTranspose has 25, a floor near 2x; docs/architecture.md, the h_s lowerings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, N, M, SEED = 768, 512, 128, 192, 0
SHIPPED = ROOT / "packages" / "int16"
RATE_POINTS = ("q1", "q2", "q3", "q4")
MODEL_DEPS = {"scipy": "scipy", "einops": "einops"}
TARGET, HS_TARGET = 0.8, 2.0
HUGEPAGES = "glibc.malloc.hugetlb=1"
BENCH_RUNTIME = "ort-cpu-1t"


@dataclass(frozen=True)
class Case:
    name: str
    package: Path
    n: int
    m: int


class _RoundClock:
    """Wall and process CPU time of a round trip's two halves (single-threaded work: CPU time is what it
    costs without the waits that other processes on a loaded machine impose)."""

    def __init__(self) -> None:
        self._marks = [(time.perf_counter(), time.process_time())]

    def split(self) -> None:
        self._marks.append((time.perf_counter(), time.process_time()))

    def figures(self, size: int) -> dict[str, float]:
        (w0, c0), (w1, c1), (w2, c2) = self._marks
        ms = {"encode_ms": w1 - w0, "decode_ms": w2 - w1, "encode_cpu_ms": c1 - c0, "decode_cpu_ms": c2 - c1}
        return {**{key: value * 1e3 for key, value in ms.items()}, "bytes": size}


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
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


def _compressai_round_trip(net: Any, x: Any) -> dict[str, float]:
    import torch

    with torch.no_grad():
        clock = _RoundClock()
        coded = net.compress(x)
        clock.split()
        net.decompress(coded["strings"], coded["shape"])
        clock.split()
    return clock.figures(sum(len(s[0]) for s in coded["strings"]))


def compressai_worker(image_path: str, channels: list[str]) -> None:
    """Serve round trips on stdin/stdout: one line `N,M` in, one JSON line of that model's times out."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    scale_hyperprior = _import_compressai_models()
    image = np.load(image_path)
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    nets = {}
    for key in channels:
        n, m = (int(part) for part in key.split(","))
        nets[key] = scale_hyperprior(n, m).eval()  # N=128, M=192: bmshj2018-hyperprior, quality 3
        nets[key].update(force=True)
        _compressai_round_trip(nets[key], x)  # warm-up
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_compressai_round_trip(nets[line.strip()], x)), flush=True)


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


class CompressAIProcess:
    """The CompressAI worker as a subprocess that times one round trip per request."""

    def __init__(self, image_path: Path, cases: list[Case]) -> None:
        keys = sorted({f"{case.n},{case.m}" for case in cases})
        cmd = [str(_bench_python()), __file__, "--compressai-worker", str(image_path), *keys]
        self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._reply()

    def round_trip(self, case: Case) -> dict[str, float]:
        self._process.stdin.write(f"{case.n},{case.m}\n")  # type: ignore[union-attr]
        self._process.stdin.flush()  # type: ignore[union-attr]
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        line = self._process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"CompressAI worker exited ({self._process.wait()}); see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        self._process.stdin.close()  # type: ignore[union-attr]
        self._process.wait()


# --- bitmatch half ---


def bench_image() -> np.ndarray:
    from codec.networks import synthetic_images

    return np.ascontiguousarray(synthetic_images(SEED, 1, WIDTH)[0][:HEIGHT])


def build_random_gdn(workdir: Path) -> float:
    """int16 and float packages of one set of random GDN weights (N, M, SEED); seconds it took."""
    from codec import networks
    from codec.build import build_package

    start = time.perf_counter()
    arch = networks.Architecture(n=N, m=M, transform="gdn")
    weights = networks.random_weights(arch, SEED)
    for precision in ("int16", "float"):
        metadata = {"weights": "random", "seed": SEED}
        build_package(workdir / precision, precision, arch, weights, SEED, metadata=metadata)
    return time.perf_counter() - start


@dataclass(frozen=True)
class SessionSettings:
    """A bench-only variant of `ort-cpu-1t`'s sessions (one thread each way): not a named runtime."""

    optimize: bool  # ORT's default graph optimisations (ORT_ENABLE_ALL), as `ort-cpu` has them
    arena: bool  # ORT's CPU memory arena, kept between runs

    def session(self, model: bytes) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = self.arena
        options.enable_mem_pattern = False  # as the codec: image shapes vary
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not self.optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return _Session(ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]))


class _Session:
    def __init__(self, session: Any) -> None:
        self._session = session
        self._outputs = [output.name for output in session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self._session.run(self._outputs, feeds), strict=True))


# side -> how its sessions differ from ort-cpu-1t (None: the named runtime itself)
SIDES: dict[str, SessionSettings | None] = {
    "bitmatch": None,
    "bitmatch_optimised": SessionSettings(optimize=True, arena=True),
    "bitmatch_lean": SessionSettings(optimize=False, arena=False),
}


def bench_codec(package: Path, settings: SessionSettings | None):  # type: ignore[no-untyped-def]
    """The package on `ort-cpu-1t`, its three sessions remade with `settings` when given."""
    from codec.codec import Codec
    from codec.package import ANALYSIS, HYPER_SYNTHESIS, SYNTHESIS

    codec = Codec.load(package, "ort-cpu-1t")
    if settings is not None:
        for attribute, name in (
            ("_analysis", ANALYSIS),
            ("_synthesis", SYNTHESIS),
            ("_hyper", HYPER_SYNTHESIS),
        ):
            setattr(codec, attribute, settings.session(codec.package.read(name)))
    return codec


def bitmatch_round_trip(codec: Any, image: np.ndarray) -> dict[str, float]:
    clock = _RoundClock()
    encoded = codec.encode(image, reconstruct=False)
    clock.split()
    decoded = codec.decode(encoded.bitstream)
    clock.split()
    if any(decoded.stage_hashes[stage] != digest for stage, digest in encoded.stage_hashes.items()):
        raise RuntimeError("bitmatch round trip changed a stage hash")
    return clock.figures(len(encoded.bitstream))


def hs_times(workdir: Path, image: np.ndarray, repeats: int) -> dict[str, float]:
    from codec.codec import Codec
    from codec.networks import pad_image

    times = {}
    for precision in ("int16", "float"):
        codec = Codec.load(workdir / precision, "ort-cpu-1t")
        z_hat = np.rint(codec._analysis.run({"x": pad_image(image)})["z"]).astype(np.int32)
        codec._hyper.run({"z_hat": z_hat})
        times[f"{precision}_hs_ms"] = _best_ms(
            lambda c=codec, z=z_hat: c._hyper.run({"z_hat": z}), 5 * repeats
        )
    return times


# --- one run, both sides interleaved ---


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    best = {"bytes": rounds[-1]["bytes"]}
    for clock in ("", "cpu_"):
        best[f"{clock}ms"] = min(r[f"encode_{clock}ms"] + r[f"decode_{clock}ms"] for r in rounds)
        for half in ("encode", "decode"):
            best[f"{half}_{clock}ms"] = min(r[f"{half}_{clock}ms"] for r in rounds)
    return best


def measure(cases: list[Case], image: np.ndarray, image_path: Path, repeats: int) -> dict[str, Any]:
    """Every case on every side, in rounds: {case: {side: best figures}}, and the CompressAI worker's info."""
    codecs = {
        (case.name, side): bench_codec(case.package, how) for case in cases for side, how in SIDES.items()
    }
    for codec in codecs.values():
        bitmatch_round_trip(codec, image)  # warm-up
    rounds: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in codecs}
    compressai = CompressAIProcess(image_path, cases)
    try:
        for _ in range(repeats):
            for case in cases:
                for side in SIDES:
                    rounds[case.name, side].append(bitmatch_round_trip(codecs[case.name, side], image))
                rounds.setdefault((case.name, "compressai"), []).append(compressai.round_trip(case))
    finally:
        compressai.close()
    figures: dict[str, Any] = {case.name: {"n": case.n, "m": case.m} for case in cases}
    for (name, side), side_rounds in rounds.items():
        figures[name][side] = _best(side_rounds)
    return {"cases": figures, "compressai_worker": compressai.info}


def with_ratios(figures: dict[str, Any]) -> dict[str, Any]:
    """Each case's ratios, bitmatch time / CompressAI time (lower is faster): wall clock and CPU time."""
    for case in figures.values():
        theirs = case["compressai"]
        for clock in ("", "cpu_"):
            for part in ("", "encode_", "decode_"):
                case[f"{part}{clock}ratio"] = (
                    case["bitmatch"][f"{part}{clock}ms"] / theirs[f"{part}{clock}ms"]
                )
            for side in SIDES:
                if side != "bitmatch":
                    case[f"{side}_{clock}ratio"] = case[side][f"{clock}ms"] / theirs[f"{clock}ms"]
    return figures


def run(repeats: int) -> dict[str, Any]:
    image = bench_image()
    provision()
    with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
        workdir = Path(tmp)
        build_s = build_random_gdn(workdir)
        cases = [Case("random", workdir / "int16", N, M)]
        cases += [Case(f"int16-{q}", SHIPPED / q, 32, 48) for q in RATE_POINTS]
        np.save(workdir / "image.npy", image)
        result = measure(cases, image, workdir / "image.npy", repeats)
        result.update(hs_times(workdir, image, repeats))
    with_ratios(result["cases"])
    result["int16_vs_float_hs"] = result["int16_hs_ms"] / result["float_hs_ms"]
    result.update(
        image=f"{WIDTH}x{HEIGHT}",
        build_s=build_s,
        repeats=repeats,
        bitmatch_runtime=BENCH_RUNTIME,
        compressai_runtime="torch, 1 thread",
        glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""),
        precision="int16",
        worst=worst_ratios(result["cases"]),
        targets={"ratio": TARGET, "int16_vs_float_hs": HS_TARGET},
    )
    return result


def worst_ratios(figures: dict[str, Any]) -> dict[str, float]:
    """Per side and clock, the highest ratio over the cases (the target is for every case)."""
    keys = [f"{clock}ratio" for clock in ("", "cpu_")]
    keys += [f"{side}_{clock}ratio" for side in SIDES if side != "bitmatch" for clock in ("", "cpu_")]
    return {key: max(case[key] for case in figures.values()) for key in keys}


COLUMNS = (
    ("bitmatch", lambda c: c["bitmatch"]["ms"], "{:9.1f}"),
    ("CompressAI", lambda c: c["compressai"]["ms"], "{:10.1f}"),
    ("ratio", lambda c: c["ratio"], "{:6.3f}"),
    ("cpu", lambda c: c["cpu_ratio"], "{:6.3f}"),
    ("enc", lambda c: c["encode_cpu_ratio"], "{:6.3f}"),
    ("dec", lambda c: c["decode_cpu_ratio"], "{:6.3f}"),
    ("optimised", lambda c: c["bitmatch_optimised_cpu_ratio"], "{:9.3f}"),
    ("lean", lambda c: c["bitmatch_lean_cpu_ratio"], "{:6.3f}"),
)


def print_table(result: dict[str, Any]) -> None:
    tunables = f", GLIBC_TUNABLES={result['glibc_tunables']}" if result["glibc_tunables"] else ""
    print(f"{result['image']}: bitmatch on {BENCH_RUNTIME} / CompressAI on torch 1 thread{tunables}")
    print("case     N,M     " + " ".join(f"{name:>{len(fmt.format(0))}s}" for name, _, fmt in COLUMNS))
    for name, case in result["cases"].items():
        cells = " ".join(fmt.format(get(case)) for _, get, fmt in COLUMNS)
        print(f"{name:8s} {case['n']:>3d},{case['m']:<3d} {cells}")
    print("ms: wall, best round. ratios: wall, then CPU time (cpu, enc, dec; optimised, lean: CPU time,")
    print("bench-only session variants)")
    worst = result["worst"]
    print(
        f"worst CPU-time ratio: ort-cpu-1t {worst['cpu_ratio']:.3f}, optimised "
        f"{worst['bitmatch_optimised_cpu_ratio']:.3f}, lean {worst['bitmatch_lean_cpu_ratio']:.3f} "
        f"(target <= {TARGET})"
    )
    print(
        f"h_s int16 {result['int16_hs_ms']:.2f} ms, float {result['float_hs_ms']:.2f} ms, "
        f"ratio {result['int16_vs_float_hs']:.2f} (target <= {HS_TARGET})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (each case once per side per round)")
    parser.add_argument(
        "--hugepages",
        action="store_true",
        help=f"rerun with GLIBC_TUNABLES={HUGEPAGES} (both sides: malloc asks for transparent huge pages)",
    )
    parser.add_argument("--compressai-worker", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compressai_worker:
        compressai_worker(args.compressai_worker[0], args.compressai_worker[1:])
        return
    if args.hugepages and os.environ.get("GLIBC_TUNABLES") != HUGEPAGES:
        # glibc reads its tunables at process start only
        argv = [sys.executable, __file__, *sys.argv[1:]]
        os.execve(sys.executable, argv, {**os.environ, "GLIBC_TUNABLES": HUGEPAGES})
    sys.path.insert(0, str(ROOT))
    result = run(args.repeats)
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
