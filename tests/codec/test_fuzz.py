"""Fuzzing the decoder: damaged bitstreams end in a typed BitstreamError or a valid decode, each within 1 s.

The valid bitstreams come from a small stand-in of the codec's entropy path built on the real rANS coder and
code tables: z is coded with per-channel factorized tables, y with Gaussian level tables whose per-element
level is derived from the decoded z (in place of the hyper-synthesis network), so a damaged z section
desynchronises y exactly as in the real codec.

Two populations of mutations: raw ones, which the CRC catches almost always, and ones with the CRC recomputed
afterwards, which reach the header checks and the entropy decoder behind the container.

The 1 s bound is a behaviour bound (no damaged stream may make the decoder work without limit), enforced per
case on the process's CPU time so that other work on a shared machine does not decide the verdict.
"""

import signal
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from codec import rans, tables
from codec.bitstream import MAX_PIXELS, Bitstream, pack, unpack
from codec.errors import BitstreamError

CASES_PER_POPULATION = 5_000
CASE_BUDGET_S = 1.0
DIGEST = bytes(range(0xA0, 0xC0)).hex()
Z_CHANNELS, Y_CHANNELS = 3, 4
Z_STRIDE, Y_STRIDE = 64, 16
LEVELS = 16
IMAGE_SIZES = [(1, 1), (17, 31), (64, 64), (96, 160), (130, 70)]
FIXED_HEADER = 47  # magic, version, digest, height, width, section count


# --- a stand-in of the codec's entropy path -----------------------------------------------------------------


@dataclass(frozen=True)
class Coder:
    z_tables: tables.CodeTables
    y_tables: tables.CodeTables


@dataclass(frozen=True)
class Decoded:
    height: int
    width: int
    z_hat: np.ndarray
    y_sym: np.ndarray


def build_coder() -> Coder:
    support = np.arange(-8, 9)
    pmfs = [np.exp(-np.abs(support) / scale) for scale in (0.7, 1.5, 3.0)]
    z_tables = tables.tables_from_pmfs([pmf / pmf.sum() for pmf in pmfs], offsets=[-8] * Z_CHANNELS)
    y_tables, _ = tables.gaussian_level_tables(LEVELS)
    return Coder(z_tables, y_tables)


def latent_shape(height: int, width: int, channels: int, stride: int) -> tuple[int, int, int]:
    return channels, -(-height // stride), -(-width // stride)


def z_indexes(height: int, width: int) -> np.ndarray:
    shape = latent_shape(height, width, Z_CHANNELS, Z_STRIDE)
    return np.broadcast_to(np.arange(Z_CHANNELS, dtype=np.int32)[:, None, None], shape).copy()


def y_indexes(z_hat: np.ndarray, height: int, width: int) -> np.ndarray:
    """Stand-in for h_s: each y element's level is a deterministic function of the z_hat values above it."""
    _, rows, cols = latent_shape(height, width, Y_CHANNELS, Y_STRIDE)
    ratio = Z_STRIDE // Y_STRIDE
    upsampled = z_hat.astype(np.int64).repeat(ratio, axis=1).repeat(ratio, axis=2)[:, :rows, :cols]
    mixed = np.abs(upsampled.sum(axis=0)) * 5 + np.arange(Y_CHANNELS)[:, None, None] * 3
    return (mixed % LEVELS).astype(np.int32)


def sample_latents(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random z_hat and y symbols of the shapes the image size implies, each with an escaped value."""
    z_hat = np.rint(rng.laplace(0.0, 1.5, latent_shape(height, width, Z_CHANNELS, Z_STRIDE))).astype(np.int32)
    z_hat.flat[0] = 40  # outside every z table
    y_sym = np.rint(rng.normal(0.0, 0.5 + y_indexes(z_hat, height, width))).astype(np.int32)
    y_sym.flat[-1] = -300  # outside every level table
    return z_hat, y_sym


def encode(coder: Coder, height: int, width: int, z_hat: np.ndarray, y_sym: np.ndarray) -> bytes:
    sections = {
        "z": rans.encode(z_hat, z_indexes(height, width), coder.z_tables),
        "y": rans.encode(y_sym, y_indexes(z_hat, height, width), coder.y_tables),
    }
    return pack(Bitstream(DIGEST, height, width, sections))


def decode(coder: Coder, data: bytes, backend: str, progress: list[str]) -> Decoded:
    """Decode like the codec does, appending to `progress` the name of each stage as it starts."""
    progress.append("container")
    bs = unpack(data, expected_digest=DIGEST)
    z_data, y_data = bs.payloads("z", "y")
    progress.append("z")
    z_hat = rans.decode(z_data, z_indexes(bs.height, bs.width), coder.z_tables, backend=backend)
    progress.append("y")
    y_sym = rans.decode(y_data, y_indexes(z_hat, bs.height, bs.width), coder.y_tables, backend=backend)
    return Decoded(bs.height, bs.width, z_hat, y_sym)


# --- mutations ----------------------------------------------------------------------------------------------


def flip_bit(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    bit = int(rng.integers(len(out) * 8))
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def replace_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4)) if out else 0):
        out[int(rng.integers(len(out)))] = int(rng.integers(256))
    return bytes(out)


def insert_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(len(data) + 1))
    return data[:at] + rng.bytes(int(rng.integers(1, 9))) + data[at:]


def delete_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(len(data) + 1))
    return data[:at] + data[at + int(rng.integers(1, 9)) :]


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(len(data) + 1))]


def length_field_offsets(data: bytes) -> list[tuple[int, str]]:
    """Offsets and struct formats of the size fields (height, width, count, name lengths, section lengths)
    found in `data`, which may already be damaged: only fields lying wholly inside it are returned."""
    fields = [(38, "<I"), (42, "<I"), (46, "<B")]
    pos = FIXED_HEADER
    for _ in range(data[46] if len(data) > 46 else 0):
        if pos >= len(data):
            break
        fields += [(pos, "<B"), (pos + 1 + data[pos], "<I")]
        pos += 1 + data[pos] + 4
    return [(offset, fmt) for offset, fmt in fields if offset + struct.calcsize(fmt) <= len(data)]


def edit_length_field(data: bytes, rng: np.random.Generator) -> bytes:
    fields = length_field_offsets(data)
    if not fields:
        return data
    offset, fmt = fields[int(rng.integers(len(fields)))]
    (old,) = struct.unpack_from(fmt, data, offset)
    limit = 0xFF if fmt == "<B" else 0xFFFFFFFF
    candidates = [
        0,
        1,
        old - 1,
        old + 1,
        old * 2,
        old + int(rng.integers(-64, 65)),
        limit,
        limit // 2 + 1,
        int(rng.integers(limit + 1)),
    ]
    value = int(np.clip(candidates[int(rng.integers(len(candidates)))], 0, limit))
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


PAYLOAD_MUTATIONS: list[Callable[[bytes, np.random.Generator], bytes]] = [
    flip_bit,
    replace_bytes,
    insert_bytes,
    delete_bytes,
    truncate,
]
MUTATIONS = [*PAYLOAD_MUTATIONS, edit_length_field]


def mutate_raw(data: bytes, rng: np.random.Generator) -> bytes:
    for _ in range(int(rng.integers(1, 3))):
        data = MUTATIONS[int(rng.integers(len(MUTATIONS)))](data, rng)
    return data


def mutate_with_valid_crc(data: bytes, rng: np.random.Generator) -> bytes:
    """A mutation that the CRC cannot catch, so the checks behind it are what gets exercised.

    Three in four damage a section payload and repack it with consistent lengths (this reaches the entropy
    decoder); the rest damage anything before the CRC, header fields included, and recompute the CRC.
    """
    if rng.random() < 0.75:
        bs = unpack(data)
        name = list(bs.sections)[int(rng.integers(len(bs.sections)))]
        mutation = PAYLOAD_MUTATIONS[int(rng.integers(len(PAYLOAD_MUTATIONS)))]
        sections = {**bs.sections, name: mutation(bs.sections[name], rng)}
        return pack(Bitstream(bs.codec_digest, bs.height, bs.width, sections))
    body = mutate_raw(data[:-4], rng)
    return body + struct.pack("<I", zlib.crc32(body))


# --- the harness --------------------------------------------------------------------------------------------


class BudgetExceeded(Exception):
    pass


@contextmanager
def cpu_time_budget(seconds: float) -> Iterator[None]:
    """Interrupt the block once it has used `seconds` of CPU time (SIGVTALRM; pytest-timeout owns SIGALRM)."""

    def interrupt(signum, frame):
        raise BudgetExceeded(f"a single decode used more than {seconds} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, interrupt)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    reached_entropy_decoder: int = 0
    max_cpu_s: float = 0.0
    max_wall_s: float = 0.0

    def summary(self) -> str:
        return (
            f"{dict(self.outcomes)}; reached the entropy decoder: {self.reached_entropy_decoder}; "
            f"max per case: CPU {self.max_cpu_s * 1e3:.1f} ms, wall {self.max_wall_s * 1e3:.1f} ms"
        )


def run_case(coder: Coder, data: bytes, backend: str, tally: Tally, damaged: bool = True) -> Decoded | None:
    """Decode `data` under the time budget; a typed error or a well-formed decode, anything else fails."""
    progress: list[str] = []
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    with cpu_time_budget(CASE_BUDGET_S):
        try:
            decoded = decode(coder, data, backend, progress)
            outcome = "valid decode of damaged data" if damaged else "valid decode of unchanged data"
        except BitstreamError as error:
            decoded, outcome = None, f"{type(error).__name__} in {progress[-1]}"
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    assert cpu <= CASE_BUDGET_S, f"decode used {cpu:.3f} s of CPU time"
    tally.max_cpu_s, tally.max_wall_s = max(tally.max_cpu_s, cpu), max(tally.max_wall_s, wall)
    tally.outcomes[outcome] += 1
    tally.reached_entropy_decoder += progress[-1] != "container"
    if decoded is not None:
        assert decoded.z_hat.dtype == np.int32 and decoded.y_sym.dtype == np.int32
        assert decoded.z_hat.shape == latent_shape(decoded.height, decoded.width, Z_CHANNELS, Z_STRIDE)
        assert decoded.y_sym.shape == latent_shape(decoded.height, decoded.width, Y_CHANNELS, Y_STRIDE)
    return decoded


@dataclass(frozen=True)
class Sample:
    data: bytes
    z_hat: np.ndarray
    y_sym: np.ndarray


@pytest.fixture(scope="module")
def coder() -> Coder:
    return build_coder()


@pytest.fixture(scope="module")
def samples(coder: Coder) -> list[Sample]:
    rng = np.random.default_rng(2026)
    out = []
    for height, width in IMAGE_SIZES:
        z_hat, y_sym = sample_latents(height, width, rng)
        out.append(Sample(encode(coder, height, width, z_hat, y_sym), z_hat, y_sym))
    return out


@pytest.mark.parametrize("backend", rans.BACKENDS)
def test_valid_streams_round_trip(coder: Coder, samples: list[Sample], backend: str):
    for sample in samples:
        decoded = decode(coder, sample.data, backend, [])
        np.testing.assert_array_equal(decoded.z_hat, sample.z_hat)
        np.testing.assert_array_equal(decoded.y_sym, sample.y_sym)


POPULATIONS = [
    ("raw", mutate_raw, "numba"),
    ("crc-recomputed", mutate_with_valid_crc, "numba"),
    ("crc-recomputed", mutate_with_valid_crc, "numpy"),
]


@pytest.mark.parametrize(("population", "mutate", "backend"), POPULATIONS)
def test_mutated_streams_end_in_a_typed_error_or_a_valid_decode(coder, samples, population, mutate, backend):
    for sample in samples:  # compile and warm up outside the budget
        decode(coder, sample.data, backend, [])
    tally = Tally()
    seed = POPULATIONS.index((population, mutate, backend))
    for case in range(CASES_PER_POPULATION):
        sample = samples[case % len(samples)]
        damaged = mutate(sample.data, np.random.default_rng([seed, case]))
        try:
            decoded = run_case(coder, damaged, backend, tally, damaged != sample.data)
            if damaged == sample.data:
                assert decoded is not None
                np.testing.assert_array_equal(decoded.y_sym, sample.y_sym)
        except Exception as failure:
            context = f"{population}/{backend} case {case}, input {damaged.hex()}"
            raise AssertionError(f"{context}: {type(failure).__name__}: {failure}") from failure
    print(f"\n{population}/{backend}: {tally.summary()}")
    assert sum(tally.outcomes.values()) == CASES_PER_POPULATION
    if population == "crc-recomputed":
        assert tally.reached_entropy_decoder >= CASES_PER_POPULATION // 2


@pytest.mark.parametrize("backend", rans.BACKENDS)
@pytest.mark.parametrize(("height", "width"), [(8192, 8192), (MAX_PIXELS, 1), (1, MAX_PIXELS)])
def test_largest_claimed_image_size_fails_fast(coder, samples, backend, height, width):
    """A CRC-consistent header claiming the largest allowed image must not make the decoder run long."""
    for sample in samples:
        body = bytearray(sample.data[:-4])
        struct.pack_into("<II", body, 38, height, width)
        tally = Tally()
        assert run_case(coder, bytes(body) + struct.pack("<I", zlib.crc32(body)), backend, tally) is None


def test_the_budget_interrupts_a_runaway_decode():
    started = time.process_time()
    with pytest.raises(BudgetExceeded), cpu_time_budget(0.05):
        while time.process_time() - started < 5:
            pass
    assert time.process_time() - started < 1
