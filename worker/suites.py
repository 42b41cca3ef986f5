"""Conformance suites, in the spirit of fluster's test suites: bitstreams with the result every device must
give. `bitmatch suite make` (server/suites.py) writes one from a job; `bitmatch suite run` checks a target.

    SUITE/suite.json        the suite (format `bitmatch-conformance-suite`, version 1, `Suite` below)
    SUITE/codecs/<d>.tar    the packages the vectors need
    SUITE/bitstreams/*.bmc  the vectors' inputs

A positive vector expects every stage hash, the reconstruction's among them; a negative one (a truncated,
corrupted, foreign or future bitstream) expects a typed error code, the same on every device.

`suite run` exits 0 when every vector gives its expected result, 1 when one does not, 2 when the target
cannot run here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codec.package import CodecPackage, archive_bytes
from codec.vocabulary import Stage
from worker.offline import Runner, SetError

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


def check_vector(vector: TestVector, result_hashes: dict[str, str] | None, error: str | None) -> str:
    """'' when the device gave what the vector expects, else what it gave instead."""
    if vector.expected_error is not None:
        if error == vector.expected_error:
            return ""
        return f"expected error {vector.expected_error}, got " + (error or "a decoded image")
    if error is not None:
        return f"expected a decoded image, got error {error}"
    wrong = [s for s, h in vector.expected.stage_hashes.items() if (result_hashes or {}).get(s) != h]
    return f"differs at {', '.join(wrong)}" if wrong else ""


async def run_suite(suite_dir: Path, suite: Suite, runner: Runner) -> list[tuple[TestVector, str]]:
    """Every vector on the runner's target: (vector, '' or what went wrong)."""
    for digest, codec in suite.codecs.items():
        package = CodecPackage.load(suite_dir / codec.archive)
        if package.digest != digest:
            raise SetError(f"{codec.archive} holds codec {package.digest}, not {digest}")
        runner.ensure(package, archive_bytes(package))
    outcomes = []
    for vector in suite.test_vectors:
        data = (suite_dir / vector.input).read_bytes()
        if hashlib.sha256(data).hexdigest() != vector.input_sha256:
            outcomes.append((vector, "the input file does not hash to input_sha256"))
            continue
        report = await runner.decode(vector.codec, data, allow_foreign=False)
        if report.error is not None:
            outcomes.append((vector, check_vector(vector, None, report.error.error)))
            continue
        result = report.result
        error = result.decode_error.error if result.partial and result.decode_error else None
        outcomes.append((vector, check_vector(vector, dict(result.stage_hashes), error)))
    return outcomes


def junit_xml(suite: Suite, target: str, outcomes: list[tuple[TestVector, str]]) -> str:
    """A suite run as JUnit XML: one testcase per vector, a failure for every unexpected result."""
    from xml.etree import ElementTree as ET

    failures = sum(bool(problem) for _, problem in outcomes)
    root = ET.Element(
        "testsuites",
        name=f"{suite.name} on {target}",
        tests=str(len(outcomes)),
        failures=str(failures),
        errors="0",
    )
    cases = ET.SubElement(
        root,
        "testsuite",
        name=f"{suite.name}.{target}",
        tests=str(len(outcomes)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for vector, problem in outcomes:
        case = ET.SubElement(cases, "testcase", classname=f"{suite.name}.{target}", name=vector.name)
        if problem:
            ET.SubElement(case, "failure", type="conformance", message=problem)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
