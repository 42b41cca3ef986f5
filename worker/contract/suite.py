"""The conformance-suite directory (format `bitmatch-conformance-suite`, version 1), and reading one back.

`bitmatch suite make` (server/suites.py) writes one from a job; `bitmatch suite run` (worker/suites.py)
checks a target against it:

    SUITE/suite.json        the suite (`Suite` below)
    SUITE/codecs/<d>.tar    the packages the vectors need
    SUITE/bitstreams/*.bmc  the vectors' inputs

A positive vector expects every stage hash, the reconstruction's among them; a negative one (a truncated,
corrupted, foreign or future bitstream) expects a typed error code, the same on every device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codec.vocabulary import Stage
from worker.contract.offline_set import SetError

FORMAT, VERSION = "bitmatch-conformance-suite", 1
SUITE_FILE = "suite.json"


class SuiteCodec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    precision: str
    archive: str


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_hashes: dict[Stage, str]


class TestVector(BaseModel):
    __test__: ClassVar[bool] = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")
    name: str
    codec: str = Field(description="the package that decodes the input")
    input: str = Field(description="path of the bitstream, relative to the suite")
    input_sha256: str
    expected: Expected | None = None
    expected_error: str | None = None
    source: dict[str, str] = Field(default_factory=dict, description="where the vector came from")

    @model_validator(mode="after")
    def _one_expectation(self) -> TestVector:
        if (self.expected is None) == (self.expected_error is None):
            raise ValueError("a test vector expects either a result or an error code")
        return self


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["bitmatch-conformance-suite"] = FORMAT
    version: Literal[1] = VERSION
    name: str
    description: str = ""
    codecs: dict[str, SuiteCodec]
    test_vectors: list[TestVector] = Field(min_length=1)


def load_suite(path: Path) -> Suite:
    try:
        return Suite.model_validate_json((path / SUITE_FILE).read_bytes())
    except FileNotFoundError:
        raise SetError(f"{path} is not a conformance suite: no {SUITE_FILE}") from None
    except (OSError, ValidationError) as exc:
        raise SetError(f"{path / SUITE_FILE}: {str(exc).splitlines()[0]}") from None


def write_suite(path: Path, suite: Suite) -> None:
    (path / SUITE_FILE).write_text(json.dumps(suite.model_dump(mode="json", exclude_none=True), indent=1))
