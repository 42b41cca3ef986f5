"""bitmatch's JUnit exports (`aggregate` and `suite run --junit`) against the Jenkins xUnit JUnit schema, and
read back with junitparser the way CI consumers read them."""

import json
import subprocess
from pathlib import Path

import pytest
import xmlschema
from junitparser import xunit2
from nightly_harness import BITMATCH, ROOT, Night

pytestmark = pytest.mark.slow  # every test here runs real encode-set nights first

JUNIT_XSD = ROOT / "tests" / "data" / "junit" / "junit-10.xsd"
NO_EVIDENCE = {"error", "timeout", "worker-lost", "not-run"}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(JUNIT_XSD)


@pytest.fixture(scope="module")
def aggregated(nights: tuple[Night, Night, Path]) -> tuple[Path, dict]:
    """The second night's junit.xml and results.json."""
    report = nights[1].report
    return report / "junit.xml", json.loads((report / "results.json").read_text())


@pytest.fixture(scope="module")
def suite_run(
    nights: tuple[Night, Night, Path], aggregated: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, Path]:
    """A suite made from the second night's job in the history, run on cpu: (suite.json, its JUnit XML)."""
    job = aggregated[1]["job"]["id"]
    base = tmp_path_factory.mktemp("suite")
    suite, junit = base / "suite", base / "suite-junit.xml"
    for args in (
        ["suite", "make", "--data-dir", nights[2], "--job", job, "--out", suite],
        ["suite", "run", suite, "--target", "cpu", "--junit", junit],
    ):
        done = subprocess.run([BITMATCH, *map(str, args)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"bitmatch {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"
    return json.loads((suite / "suite.json").read_text()), junit


def schema_errors(schema: xmlschema.XMLSchema, path: Path) -> list[str]:
    """Each distinct problem once, as 'path of its first instance: reason'."""
    problems: dict[str, str] = {}
    for error in schema.iter_errors(str(path)):
        problems.setdefault(error.reason or str(error), error.path or "?")
    return [f"{where}: {reason}" for reason, where in problems.items()]


def test_the_aggregate_junit_is_valid_junit_10(schema: xmlschema.XMLSchema, aggregated: tuple) -> None:
    assert schema_errors(schema, aggregated[0]) == []


def test_the_aggregate_junit_reads_back_with_junitparser(aggregated: tuple) -> None:
    path, results = aggregated
    xml = xunit2.JUnitXml.fromfile(str(path))
    cells = {
        (f"{c['codec_name']}.{c['image_name']}", f"{c['encoder']} -> {c['decoder']}"): c
        for c in results["cells"]
    }
    failing = [c for c in cells.values() if not c["passed"] or c["nondeterministic"]]
    assert (xml.tests, xml.failures + xml.errors) == (len(cells), len(failing))
    assert xml.errors == sum(c["verdict"] in NO_EVIDENCE for c in cells.values())
    assert {suite.name for suite in xml} == {c["codec_name"] for c in cells.values()}
    seen = set()
    for suite in xml:
        assert suite.tests == len(list(suite))
        suite_facts = {p.name: p.value for p in suite.properties()}
        assert suite_facts["precision"] in ("int16", "float") and suite_facts["job"].isdigit()
        for case in suite:
            facts = dict(line.split(": ", 1) for line in case.system_out.splitlines())
            cell = cells[(case.classname, case.name)]
            assert facts["verdict"] == cell["verdict"]
            assert facts["at_risk"] == str(cell["risk"]["at_risk"]).lower()
            assert case.is_passed == (cell["passed"] and not cell["nondeterministic"])
            seen.add((case.classname, case.name))
    assert seen == set(cells)


def test_the_suite_run_junit_is_valid_junit_10(schema: xmlschema.XMLSchema, suite_run: tuple) -> None:
    assert schema_errors(schema, suite_run[1]) == []


def test_the_suite_run_junit_reads_back_with_junitparser(suite_run: tuple) -> None:
    suite, path = suite_run
    xml = xunit2.JUnitXml.fromfile(str(path))
    vectors = [vector["name"] for vector in suite["test_vectors"]]
    assert (xml.tests, xml.failures, xml.errors) == (len(vectors), 0, 0)
    (run,) = xml
    assert run.name == f"{suite['name']}.cpu"
    assert [case.name for case in run] == vectors
    assert all(case.is_passed and case.classname == run.name for case in run)
