"""The worker's published contract: the wire models and file formats the coordinator reads too.

The coordinator (`server/`) imports nothing else of the worker (tests/test_layering.py holds it to that):

- results.py         what an encode or a decode returns, over HTTP, from a pull worker or in a file
- fingerprint.py     the identity (digest) of a device fingerprint, what `GET /v1/info` reports
- replay_setting.py  how a recorded side is replayed (the fingerprint's `replay` entry)
- tokens.py          where the bearer tokens come from: their environment variables, `--token-file`
- offline_set.py     the offline result-set directory (`bitmatch-result-set`)
- suite.py           the conformance-suite directory (`bitmatch-conformance-suite`)
- bundle_layout.py   the names inside a repro bundle

The result models are importable from here too, as they were before the contract became a package.
"""

from worker.contract.results import (
    MAP_NAMES,
    CodecResult,
    DecodeResult,
    EncodeResult,
    ErrorBody,
    Metrics,
    TaskError,
    TaskReport,
    TensorMap,
    parse_result,
)

__all__ = [
    "MAP_NAMES",
    "CodecResult",
    "DecodeResult",
    "EncodeResult",
    "ErrorBody",
    "Metrics",
    "TaskError",
    "TaskReport",
    "TensorMap",
    "parse_result",
]
