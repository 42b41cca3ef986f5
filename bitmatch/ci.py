"""The CI side of the command line: `bitmatch aggregate`, `bitmatch matrix`, `bitmatch suite make|run`.

Exit codes (server/outcome.py): 0 every verdict passes, 1 a verdict failure, 2 an infrastructure failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from codec.cli import output_file
from codec.cli_errors import describe_os_error
from codec.errors import CodecError
from server.outcome import FAIL_ON, INFRASTRUCTURE_FAILURE, VERDICT_FAILURE, Policy


def _infrastructure(exc: Exception) -> NoReturn:
    """The run did not happen (unusable input, a file that cannot be read or written): one line, exit 2."""
    message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    click.echo(f"error: {message}", err=True)
    raise SystemExit(INFRASTRUCTURE_FAILURE) from None


def _expectations(values: tuple[str, ...]) -> dict[str, set[str]]:
    expected: dict[str, set[str]] = {}
    for item in values:
        codec, _, verdicts = item.partition("=")
        if not codec or not verdicts:
            raise click.BadParameter(f"{item!r} is not CODEC=VERDICT[,VERDICT]", param_hint="--expect")
        expected.setdefault(codec, set()).update(v.strip() for v in verdicts.split(","))
    return expected


@click.command(name="aggregate")
@click.argument(
    "sets", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where results.json, cells.csv, junit.xml and report.html go.",
)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The coordinator data directory runs accumulate in [default: OUT/history].",
)
@click.option("--series", default="aggregate", show_default=True, help="The history this run belongs to.")
@click.option("--label", default=None, help="This run's name in the history [default: the date and time].")
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="any",
    show_default=True,
    help="Which verdict failures fail the run: any, or only integer codecs' desyncs.",
)
@click.option(
    "--expect",
    multiple=True,
    metavar="CODEC=VERDICT,...",
    help="Verdicts a codec (name or digest) is known to show; reported, not failing.",
)
@click.option(
    "--max-failure-probability",
    type=click.FloatRange(0, 1),
    default=None,
    help="A passing cell whose estimated failure probability exceeds this fails the run.",
)
@click.option(
    "--summary-md",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY).",
)
def aggregate_command(
    sets, out, history_dir, series, label, fail_on, expect, max_failure_probability, summary_md
) -> None:  # type: ignore[no-untyped-def]
    """Verdicts, BD-rates, exports, report and history from encode and decode sets."""
    from server import history
    from server.offline import aggregate
    from server.outcome import summary_markdown
    from worker.offline import SetError

    policy = Policy(
        fail_on=fail_on, expected=_expectations(expect), max_failure_probability=max_failure_probability
    )
    try:
        result = aggregate(list(sets), out, history_dir, series, label, policy)
    except (SetError, CodecError, OSError) as exc:  # nothing to judge: the run did not happen
        _infrastructure(exc)
    for line in history.regression_lines(result.trends):
        click.echo(line)
    for line in result.judgement.lines():
        click.echo(line)
    for name, path in result.outputs.items():
        click.echo(f"{name}: {path}")
    if summary_md is not None:
        try:
            with output_file(summary_md).open("a", encoding="utf-8") as stream:
                stream.write(summary_markdown(result))
        except OSError as exc:
            _infrastructure(exc)
    raise SystemExit(result.judgement.exit_code)


@click.command(name="matrix")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The matrix, as TOML (see examples/local-matrix.toml).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("matrix-out"),
    show_default=True,
    help="Where each job's outputs and the logs go.",
)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The coordinator data directory, kept from run to run [default: OUT/history].",
)
def matrix_command(config_path: Path, out: Path, history_dir: Path | None) -> None:
    """Run a declared matrix on local targets; exit 0 pass, 1 verdict failure, 2 infrastructure failure."""
    from bitmatch.console import Console, LaunchError
    from bitmatch.matrix import MatrixError, load_config, run_matrix

    try:
        config = load_config(config_path)
        code = run_matrix(config, out.resolve(), (history_dir or out / "history").resolve(), Console(False))
    except (MatrixError, LaunchError, OSError) as exc:  # TimeoutError is an OSError
        _infrastructure(exc)
    raise SystemExit(code)


@click.group(name="suite")
def suite_group() -> None:
    """Conformance suites: bitstreams with the result every device must give."""


@suite_group.command(name="make")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A coordinator data directory (a `serve`, `matrix` or `aggregate` history).",
)
@click.option("--job", "job_id", type=int, required=True, help="The finished job to take the vectors from.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--name", default=None, help="The suite's name [default: job-N].")
def suite_make_command(data_dir: Path, job_id: int, out: Path, name: str | None) -> None:
    """Write a suite of a job's bitstreams and their damaged copies, with the expected results."""
    from server.suites import SuiteError, make_suite

    try:
        suite = make_suite(data_dir, job_id, out, name)
    except (SuiteError, CodecError, OSError) as exc:
        _infrastructure(exc)
    click.echo(f"suite {suite.name}: {len(suite.test_vectors)} vectors in {out}")


@suite_group.command(name="run")
@click.argument("suite_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--target", default="cpu", show_default=True)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results as JUnit XML.",
)
def suite_run_command(suite_dir: Path, target: str, junit: Path | None) -> None:
    """Check every vector of a suite on a target: exit 0 all as expected, 1 a mismatch, 2 no target."""
    from worker.offline import SetError, run
    from worker.offline_cli import _runner
    from worker.suites import junit_xml, load_suite, run_suite

    try:
        suite = load_suite(suite_dir)
    except (SetError, OSError) as exc:
        _infrastructure(exc)
    runner = _runner(target, None, 300.0, 6144.0)

    async def go():  # type: ignore[no-untyped-def]
        async with runner:
            return await run_suite(suite_dir, suite, runner)

    try:
        outcomes = run(go())
    except (SetError, OSError) as exc:
        _infrastructure(exc)
    for vector, problem in outcomes:
        click.echo(f"{'FAIL' if problem else 'ok  '} {vector.name}{': ' + problem if problem else ''}")
    failed = sum(bool(problem) for _, problem in outcomes)
    click.echo(f"{suite.name} on {target}: {len(outcomes) - failed} of {len(outcomes)} as expected")
    if junit is not None:
        try:
            output_file(junit).write_text(junit_xml(suite, target, outcomes))
        except OSError as exc:
            _infrastructure(exc)
    raise SystemExit(VERDICT_FAILURE if failed else 0)
