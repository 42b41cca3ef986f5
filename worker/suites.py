"""Running conformance suites, in the spirit of fluster's test suites: bitstreams with the result every device
must give. The suite's format is the contract's (worker/contract/suite.py); `bitmatch suite make`
(server/suites.py) writes one from a job, `bitmatch suite run` checks a target against it.

`suite run` exits 0 when every vector gives its expected result, 1 when one does not, 2 when the target
cannot run here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from codec.package import CodecPackage, archive_bytes
from worker.contract.offline_set import SetError
from worker.contract.suite import Suite, TestVector, load_suite
from worker.offline import Runner

__all__ = ["check_vector", "junit_xml", "load_suite", "run_suite"]  # load_suite: for `suite run`


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
