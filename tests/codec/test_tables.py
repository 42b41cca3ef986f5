"""Integer code tables: invariants, hashing, npz I/O, builders and the redundancy report."""

import io
import itertools
import json
import math
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from codec import scale, tables
from codec.cli import codec_group
from codec.errors import PackageError

TOTAL = 1 << 16


@pytest.fixture(scope="module")
def level_tables():
    return tables.gaussian_level_tables(16)


def test_gaussian_level_tables_invariants(level_tables):
    code, rho = level_tables
    assert code.num_tables == 16 and len(rho) == 16
    assert code.cdf.dtype == np.uint32 and code.length.dtype == np.int32 and code.offset.dtype == np.int32
    freq = code.frequencies()
    radius = -code.offset.astype(np.int64)
    np.testing.assert_array_equal(code.length, 2 * radius + 1)
    assert (radius >= 1).all() and (np.diff(radius) >= 0).all()
    for t in range(code.num_tables):
        inside = freq[t, : code.length[t]]
        assert (inside >= 1).all() and inside.sum() == TOTAL
        assert (freq[t, code.length[t] :] == 0).all()
    assert (code.cdf[:, 0] == 0).all() and (code.cdf[:, -1] == TOTAL).all()
    assert code.memory_bytes() == 2 * int(code.length.sum())


def test_level_radius_covers_values_with_an_expected_count_of_min_count():
    rho = np.array([0.11, 1.0, 10.0, 200.0])
    radius = tables.level_radius(rho)
    for r, big_r in zip(rho, radius, strict=True):
        counts = scale._mass(np.arange(big_r + 1.0), np.full(big_r + 1, r)) * TOTAL
        assert (counts[1:big_r] >= tables.MIN_COUNT).all() and counts[big_r] < tables.MIN_COUNT


def test_sha256_is_deterministic_across_builds(level_tables):
    code, _ = level_tables
    scale.ode_mapping.cache_clear()
    again, _ = tables.gaussian_level_tables(16)
    assert again.sha256 == code.sha256
    np.testing.assert_array_equal(again.cdf, code.cdf)
    other, _ = tables.gaussian_level_tables(16, mapping="poly")
    assert other.sha256 != code.sha256


def test_npz_round_trip(tmp_path, level_tables):
    code, _ = level_tables
    path = tmp_path / "tables.npz"
    code.save_npz(path)
    loaded = tables.CodeTables.load_npz(path)
    assert loaded.sha256 == code.sha256 and loaded.precision == 16
    for name in ("cdf", "length", "offset"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(code, name))
        assert getattr(loaded, name).dtype == getattr(code, name).dtype


def test_npz_round_trip_through_a_file_object(level_tables):
    code, _ = level_tables
    buffer = io.BytesIO()
    code.save_npz(buffer)
    assert tables.CodeTables.load_npz(io.BytesIO(buffer.getvalue())).sha256 == code.sha256
    with pytest.raises(PackageError):
        tables.CodeTables.load_npz(io.BytesIO(buffer.getvalue()[:-7]))


def _arrays(code):
    digest = np.frombuffer(bytes.fromhex(code.sha256), dtype=np.uint8)
    return {
        "cdf": code.cdf.copy(),
        "length": code.length.copy(),
        "offset": code.offset.copy(),
        "precision": np.int32(16),
        "sha256": digest,
    }


def test_corrupted_npz_is_rejected(tmp_path, level_tables):
    code, _ = level_tables
    good = tmp_path / "good.npz"
    code.save_npz(good)
    data = good.read_bytes()

    flipped = tmp_path / "flipped.npz"
    middle = bytearray(data)
    middle[len(middle) // 2] ^= 0xFF
    flipped.write_bytes(bytes(middle))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    for path in (flipped, truncated, garbage, tmp_path / "missing.npz"):
        with pytest.raises(PackageError):
            tables.CodeTables.load_npz(path)


def test_tampered_arrays_are_rejected(tmp_path, level_tables):
    code, _ = level_tables
    cases = []
    zero_freq = _arrays(code)
    zero_freq["cdf"][0, 2] = zero_freq["cdf"][0, 1]  # a symbol with frequency 0
    cases.append(zero_freq)
    wrong_total = _arrays(code)
    wrong_total["cdf"][3, code.length[3]] -= 1
    cases.append(wrong_total)
    wrong_dtype = _arrays(code)
    wrong_dtype["cdf"] = wrong_dtype["cdf"].astype(np.int64)
    cases.append(wrong_dtype)
    short = _arrays(code)
    short["length"][0] = 2
    cases.append(short)
    # Valid invariants, but not the tables the hash was made for: offset shifted by one.
    shifted = _arrays(code)
    shifted["offset"][5] += 1
    cases.append(shifted)
    extra = _arrays(code)
    extra["notes"] = np.arange(3)
    cases.append(extra)
    for i, arrays in enumerate(cases):
        path = tmp_path / f"case{i}.npz"
        np.savez(path, **arrays)
        with pytest.raises(PackageError):
            tables.CodeTables.load_npz(path)
    pickled = tmp_path / "pickled.npz"
    arrays = _arrays(code)
    arrays["cdf"] = np.array([object()], dtype=object)
    np.savez(pickled, **arrays)
    with pytest.raises(PackageError):
        tables.CodeTables.load_npz(pickled)
    assert zipfile.is_zipfile(pickled)


def test_constructor_validates_and_freezes(level_tables):
    code, _ = level_tables
    with pytest.raises(ValueError):
        code.cdf[0, 1] = 5  # read-only
    bad = code.cdf.copy()
    bad[1, -1] = 7
    with pytest.raises(PackageError):
        tables.CodeTables(bad, code.length, code.offset)


def test_quantize_pmf_exact_total_and_floor_of_one():
    rng = np.random.default_rng(1)
    for pmf in (rng.random(50), np.r_[1.0, np.full(3000, 1e-9), 1.0], np.array([0.0, 1.0, 0.0])):
        freq = tables.quantize_pmf(pmf)
        assert freq.sum() == TOTAL and (freq >= 1).all()
    assert tables.quantize_pmf(np.array([1.0, 2.0, 1.0])).tolist() == [16384, 32768, 16384]
    with pytest.raises(PackageError):
        tables.quantize_pmf(np.array([0.5, -0.1, 0.6]))
    with pytest.raises(PackageError):
        tables.quantize_pmf(np.array([0.5, 0.5]))


def test_factorized_tables_from_pmfs():
    # Per-channel factorized prior of z: three channels, different supports and offsets.
    values = [np.arange(-3, 4), np.arange(-10, 11), np.arange(0, 2)]
    pmfs, offsets = [], []
    for c, v in enumerate(values):
        density = np.exp(-np.abs(v - 0.3 * c) / (1.0 + c))
        tail = 1e-4 * density.sum()
        pmfs.append(np.r_[tail, density, tail])
        offsets.append(int(v[0]) - 1)
    code = tables.tables_from_pmfs(pmfs, offsets)
    np.testing.assert_array_equal(code.length, [len(v) + 2 for v in values])
    np.testing.assert_array_equal(code.offset, offsets)
    freq = code.frequencies()
    for t, pmf in enumerate(pmfs):
        p = pmf / pmf.sum()
        f = freq[t, : len(pmf)]
        assert f.sum() == TOTAL and (f >= 1).all()
        entropy = -(p * np.log2(p)).sum()
        cross = -(p * np.log2(f / TOTAL)).sum()
        assert cross - entropy < 1e-4
    with pytest.raises(PackageError):
        tables.tables_from_pmfs(pmfs, offsets[:2])


def test_exp_golomb_bits():
    payload = np.array([0, 1, 2, 3, 6, 7, 1000, (1 << 20) - 1, (1 << 30)])
    expected = [2 * len(bin(x + 1)[2:]) - 1 for x in payload.tolist()]
    np.testing.assert_array_equal(tables.exp_golomb_bits(payload), expected)


def test_expected_code_bits_matches_a_direct_sum(level_tables):
    code, _ = level_tables
    samples = scale.SigmaSamples(scale.ode_mapping(), 32)
    table = samples.levels_of(16)
    got = tables.expected_code_bits(samples, code, table)
    freq = code.frequencies()
    for j in (0, 9, 31):
        sigma, t = float(samples.sigma[j]), int(table[j])
        radius = -int(code.offset[t])
        reach = math.ceil(12 * sigma) + 3
        total = 0.0
        for v in range(-reach, reach + 1):
            p = 0.5 * (
                math.erfc((2 * abs(v) - 1) / (math.sqrt(8) * sigma))
                - math.erfc((2 * abs(v) + 1) / (math.sqrt(8) * sigma))
            )
            if v == 0:
                p = math.erf(1 / (math.sqrt(8) * sigma))
            symbol = min(max(v + radius, 0), 2 * radius)
            bits = 16 - math.log2(freq[t, symbol])
            if symbol in (0, 2 * radius):
                payload = abs(v) - radius
                bits += 2 * (payload + 1).bit_length() - 1
            total += p * bits
        assert got[j] == pytest.approx(total, rel=1e-9)
        assert got[j] >= samples.entropy[j]


def test_report_rows():
    rows = tables.redundancy_report(levels=(16, 32), samples=192)
    assert [row["N"] for row in rows] == [16, 32]
    for row in rows:
        assert set(row) == {"N", "memory_kb", "redundancy_pct", "redundancy_pct_poly", "coded_redundancy_pct"}
        assert row["redundancy_pct_poly"] > row["redundancy_pct"] > 0 and row["coded_redundancy_pct"] > 0
    assert 3.5 < rows[0]["redundancy_pct"] / rows[1]["redundancy_pct"] < 4.5
    assert rows[1]["memory_kb"] > rows[0]["memory_kb"]
    text = tables.format_report(rows, 0.11, 256.0)
    assert "coded" in text and len(text.splitlines()) == 4


def test_cli_tables_json():
    result = CliRunner().invoke(codec_group, ["tables", "--json", "--sigma-min", "0.2", "--sigma-max", "50"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["N"] for row in rows] == list(tables.REPORT_LEVELS)
    pct = [row["redundancy_pct"] for row in rows]
    assert all(a > b for a, b in itertools.pairwise(pct))
    bad = CliRunner().invoke(codec_group, ["tables", "--sigma-min", "5", "--sigma-max", "1"])
    assert bad.exit_code != 0


def test_runtime_import_and_load_need_no_scipy(tmp_path, level_tables):
    code, _ = level_tables
    path = tmp_path / "tables.npz"
    code.save_npz(path)
    script = f"""
import sys
class NoScipy:
    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("scipy blocked")
sys.meta_path.insert(0, NoScipy())
from codec.tables import CodeTables
print(CodeTables.load_npz({str(path)!r}).sha256)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == code.sha256
