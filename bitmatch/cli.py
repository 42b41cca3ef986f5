"""The `bitmatch` command line: one group per package, assembled here (codec <- worker <- server), and the
launcher's own commands (`demo`, `matrix`, `aggregate`, `suite`)."""

import click

from bitmatch.ci import aggregate_command, matrix_command, suite_group
from bitmatch.demo.command import demo_command
from codec.cli import codec_group
from codec.cli_errors import ReportingGroup
from codec.importers.cli import import_group
from server.serve import serve_command
from worker.cli import worker_command
from worker.offline_cli import decode_set_command, encode_set_command
from worker.replay_cli import replay_command
from worker.targets_cli import targets_group


class BitmatchGroup(ReportingGroup):
    """The `bitmatch` group: every layer's typed errors are a user's mistake, reported on one line."""

    def user_errors(self) -> tuple[type[BaseException], ...]:
        from bitmatch.matrix import MatrixError
        from server.client import CoordinatorError
        from server.db import DatabaseRefused
        from server.suites import SuiteError
        from worker.provision import ProvisionError
        from worker.pull import CoordinatorGone
        from worker.supervisor import ComputeError

        typed = (CoordinatorError, DatabaseRefused, MatrixError, SuiteError, ProvisionError, CoordinatorGone)
        return (*super().user_errors(), *typed, ComputeError)


@click.group(cls=BitmatchGroup)
@click.version_option(package_name="bitmatch")
def cli() -> None:
    """bitmatch: cross-device interoperability test harness for learned image codecs."""


cli.add_command(codec_group)
cli.add_command(import_group)
cli.add_command(serve_command)
cli.add_command(demo_command)
cli.add_command(targets_group)
cli.add_command(worker_command)
cli.add_command(encode_set_command)
cli.add_command(decode_set_command)
cli.add_command(replay_command)
cli.add_command(aggregate_command)
cli.add_command(matrix_command)
cli.add_command(suite_group)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
