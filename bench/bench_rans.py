"""Throughput of bitmatch's rANS (codec/rans.py) against CompressAI's C++ rANS and constriction, in one run.

    .venv/bin/python bench/bench_rans.py [--json] [--symbols N] [--repeats R]

Data: N symbols (default 294,912) drawn as round(N(0, s)) with s log-uniform in [0.11, 16], each coded with
the Gaussian level table (codec.tables, 64 levels) whose sigma interval holds s. CompressAI gets the same
integer CDF rows, indexes and offsets; constriction (its stack `AnsCoder`, 32-bit words and a 64-bit state)
gets each table's frequencies as float probabilities, one i.i.d. `Categorical` per table with the symbols
grouped by table (see `constriction_half`). Both anchors run in a bench-only venv (bench/.venv-compressai,
provisioned on first use with the CPU torch==2.13.0 from local disk, compressai==1.2.8 without its
dependencies and constriction==0.5.0) as one subprocess; CompressAI's compiled `compressai.ans` extension
is loaded directly, because `import compressai` pulls in torchvision and torch_geometric. Times are the
best of R repeats of one full call each; Msym/s = N / time / 1e6; ratios are bitmatch / anchor speed (above
1: bitmatch is faster). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / "bench" / ".venv-compressai"
# 2.13.0 as the issue asks; "+cpu" names the CPU wheel on local disk, so pip fails instead of fetching the
# multi-GB CUDA build of 2.13.0 from PyPI where that wheel is missing.
TORCH_PIN = "torch==2.13.0+cpu"
COMPRESSAI_PIN = "compressai==1.2.8"
CONSTRICTION_PIN = "constriction==0.5.0"
LEVELS = 64
SIGMA_LOW, SIGMA_HIGH = 0.11, 16.0


def _best_time(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


# ---------------------------------------------------------------------------------------------------------
# CompressAI half: runs inside the bench venv (no project imports there)
# ---------------------------------------------------------------------------------------------------------


def _load_compressai_ans():  # type: ignore[no-untyped-def]
    import importlib.machinery
    import importlib.util
    import site

    for folder in site.getsitepackages():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / "compressai" / f"ans{suffix}"
            if path.exists():
                spec = importlib.util.spec_from_file_location("compressai.ans", path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                spec.loader.exec_module(module)  # type: ignore[union-attr]
                return module
    raise RuntimeError("compressai's compiled ans extension not found in the bench venv")


def compressai_worker(npz_path: str, repeats: int) -> dict[str, object]:
    ans = _load_compressai_ans()
    data = np.load(npz_path)
    values, indexes = data["values"].tolist(), data["indexes"].tolist()
    cdf, length, offset = data["cdf"], data["length"], data["offset"]
    # CompressAI's cdf rows are the L + 1 cumulative counts of an L-symbol table; its only escape is symbol
    # L - 1 (it codes value offset itself with our underflow-escape frequency), so escapes differ slightly.
    cdfs = [cdf[t, : length[t] + 1].tolist() for t in range(len(length))]
    lengths = (length + 1).tolist()
    offsets = offset.tolist()
    encoder, decoder = ans.RansEncoder(), ans.RansDecoder()
    args = (cdfs, lengths, offsets)
    enc_s, stream = _best_time(lambda: encoder.encode_with_indexes(values, indexes, *args), repeats)
    dec_s, decoded = _best_time(lambda: decoder.decode_with_indexes(stream, indexes, *args), repeats)
    return {
        "compressai_encode_s": enc_s,
        "compressai_decode_s": dec_s,
        "compressai_bytes": len(stream),  # type: ignore[arg-type]
        "compressai_round_trip": decoded == values,
        **constriction_half(data, repeats),
    }


def constriction_half(data, repeats: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """constriction's stack AnsCoder with one i.i.d. Categorical per table, symbols grouped by table.

    Its Python API takes float probabilities only: each table's are its integer frequencies / 2^16, which
    it requantises to its own 24-bit precision (perfect=False). It has no escapes, so a value outside its
    table is clipped to the table's end symbol (the JSON says how many). A per-symbol model (its option 3)
    would need an N x Lmax probability array; grouping is its fast path, and the grouping (a stable sort by
    table index, and scattering back on decode) is timed with it. Models are built before the timing, as the
    other two coders' tables are.
    """
    from importlib.metadata import version

    import constriction

    values, indexes = data["values"], data["indexes"]
    cdf, length, offset = data["cdf"], data["length"], data["offset"]
    symbols = np.clip(values - offset[indexes], 0, length[indexes] - 1).astype(np.int32)
    models = [
        constriction.stream.model.Categorical(np.diff(cdf[t, : length[t] + 1]) / 65536.0, perfect=False)
        for t in range(len(length))
    ]

    def group():  # type: ignore[no-untyped-def]
        # uint8 keys (64 tables): numpy's stable sort is then a radix sort, O(N)
        return np.argsort(indexes.astype(np.uint8), kind="stable"), np.bincount(
            indexes, minlength=len(models)
        )

    def encode():  # type: ignore[no-untyped-def]
        order, counts = group()
        grouped, ends = symbols[order], np.cumsum(counts)
        coder = constriction.stream.stack.AnsCoder()
        for t in reversed(range(len(models))):  # a stack: the last group pushed is the first popped
            coder.encode_reverse(grouped[ends[t - 1] if t else 0 : ends[t]], models[t])
        return coder.get_compressed()

    def decode(words):  # type: ignore[no-untyped-def]
        order, counts = group()
        coder = constriction.stream.stack.AnsCoder(words)
        grouped = np.concatenate([coder.decode(models[t], int(counts[t])) for t in range(len(models))])
        out = np.empty_like(grouped)
        out[order] = grouped
        return out

    enc_s, words = _best_time(encode, repeats)
    dec_s, decoded = _best_time(lambda: decode(words), repeats)
    group_s, _ = _best_time(group, repeats)
    return {
        "constriction_grouping_s": group_s,  # the part of each of its two times spent sorting by table
        "constriction_encode_s": enc_s,
        "constriction_decode_s": dec_s,
        "constriction_bytes": 4 * len(words),  # type: ignore[arg-type]
        "constriction_round_trip": bool(np.array_equal(decoded, symbols)),
        "constriction_clipped_values": int(np.count_nonzero(symbols != values - offset[indexes])),
        "constriction_version": version("constriction"),
    }


# ---------------------------------------------------------------------------------------------------------
# bitmatch half and orchestration
# ---------------------------------------------------------------------------------------------------------


def _bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def provision_bench_venv() -> None:
    """Create bench/.venv-compressai once: CPU torch from local disk, compressai without its heavy deps."""
    python = _bench_python()
    check = "import importlib.util, torch, numpy; assert torch.__version__ == '2.13.0+cpu'; "
    probe = [str(python), "-c", check + "assert importlib.util.find_spec('compressai')"]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not (python.exists() and subprocess.run(probe, capture_output=True).returncode == 0):
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([*pip, TORCH_PIN, "numpy<2"], check=True, stdout=sys.stderr)
        subprocess.run([*pip, "--no-deps", COMPRESSAI_PIN], check=True, stdout=sys.stderr)
        subprocess.run(probe, check=True)
    has_constriction = [str(python), "-c", "import constriction"]
    if subprocess.run(has_constriction, capture_output=True).returncode != 0:
        subprocess.run([*pip, CONSTRICTION_PIN, "numpy<2"], check=True, stdout=sys.stderr)


def make_workload(count: int, seed: int):  # type: ignore[no-untyped-def]
    from codec import scale, tables

    code_tables, _ = tables.gaussian_level_tables(LEVELS)
    mapping = scale.mapping("ode", scale.DEFAULT_SIGMA_MIN, scale.DEFAULT_SIGMA_MAX)
    bounds = scale.level_boundaries(LEVELS, mapping)
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(SIGMA_LOW), np.log(SIGMA_HIGH), count))
    values = np.round(rng.normal(0.0, sigma)).astype(np.int32)
    indexes = np.clip(np.searchsorted(bounds, sigma, side="right") - 1, 0, LEVELS - 1).astype(np.int32)
    return values, indexes, code_tables


def bench_bitmatch(values, indexes, code_tables, repeats: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from codec import rans

    backend = os.environ.get(rans.BACKEND_ENV) or rans.DEFAULT_BACKEND
    enc_s, stream = _best_time(lambda: rans.encode(values, indexes, code_tables), repeats)
    dec_s, decoded = _best_time(lambda: rans.decode(stream, indexes, code_tables), repeats)
    other = "numpy" if backend == "numba" else "numba"
    other_repeats = max(1, repeats // 3)
    other_enc_s, other_stream = _best_time(
        lambda: rans.encode(values, indexes, code_tables, backend=other), other_repeats
    )
    other_dec_s, _ = _best_time(
        lambda: rans.decode(stream, indexes, code_tables, backend=other), other_repeats
    )
    return {
        "bitmatch_backend": backend,
        f"bitmatch_{other}_encode_msym_s": len(values) / other_enc_s / 1e6,
        f"bitmatch_{other}_decode_msym_s": len(values) / other_dec_s / 1e6,
        "backends_same_bytes": other_stream == stream,
        "bitmatch_encode_s": enc_s,
        "bitmatch_decode_s": dec_s,
        "bitmatch_bytes": len(stream),
        "bitmatch_lanes": int.from_bytes(stream[:2], "little"),
        "bitmatch_round_trip": bool(np.array_equal(decoded, values)),
        "ideal_bytes": rans.ideal_bits(values, indexes, code_tables) / 8,
    }


NUMBA_PROBE = """
import time, numpy as np
start = time.perf_counter()
from codec import rans, tables
t = tables.tables_from_pmfs([np.ones(5)], [0])
v = np.arange(99, dtype=np.int32) % 7
i = np.zeros(99, np.int32)
assert (rans.decode(rans.encode(v, i, t, backend="numba"), i, t, backend="numba") == v).all()
print(time.perf_counter() - start)
"""


def numba_first_call_times() -> dict[str, float]:
    """Import + first encode/decode in a fresh process, with an empty numba cache, then with it filled."""
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for _ in range(2):
            command = [sys.executable, "-c", NUMBA_PROBE]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            times.append(float(done.stdout))
    return {"numba_first_call_compile_s": times[0], "numba_first_call_cached_s": times[1]}


def run_compressai(values, indexes, code_tables, repeats: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    provision_bench_venv()
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "workload.npz"
        np.savez(
            npz,
            values=values,
            indexes=indexes,
            cdf=code_tables.cdf,
            length=code_tables.length,
            offset=code_tables.offset,
        )
        cmd = [str(_bench_python()), __file__, "--compressai-worker", str(npz), "--repeats", str(repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--symbols", type=int, default=294_912)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compressai-worker", metavar="NPZ", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compressai_worker:
        print(json.dumps(compressai_worker(args.compressai_worker, args.repeats)))
        return
    sys.path.insert(0, str(ROOT))
    values, indexes, code_tables = make_workload(args.symbols, args.seed)
    result: dict[str, object] = {"symbols": args.symbols}
    result.update(bench_bitmatch(values, indexes, code_tables, args.repeats))
    result.update(run_compressai(values, indexes, code_tables, args.repeats))
    result.update(numba_first_call_times())
    for side in ("bitmatch", "compressai", "constriction"):
        for op in ("encode", "decode"):
            result[f"{side}_{op}_msym_s"] = args.symbols / float(result[f"{side}_{op}_s"]) / 1e6  # type: ignore[arg-type]
    for op in ("encode", "decode"):
        result[f"{op}_ratio"] = result[f"bitmatch_{op}_msym_s"] / result[f"compressai_{op}_msym_s"]  # type: ignore[operator]
        result[f"{op}_ratio_constriction"] = (
            result[f"bitmatch_{op}_msym_s"] / result[f"constriction_{op}_msym_s"]  # type: ignore[operator]
        )
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")
    for anchor, suffix in (("CompressAI", ""), ("constriction", "_constriction")):
        ratios = (
            f"encode {result['encode_ratio' + suffix]:.2f}x, decode {result['decode_ratio' + suffix]:.2f}x"
        )
        print(f"bitmatch / {anchor}: {ratios}")


if __name__ == "__main__":
    main()
