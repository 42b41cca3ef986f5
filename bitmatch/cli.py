"""The `bitmatch` command line: one group per package, assembled here (codec <- worker <- server), and the
launcher's own commands (`demo`, `matrix`, `aggregate`, `suite`).

Each command's module is imported only when that command runs (or when help lists it), so `bitmatch serve`
does not load the codec's ONNX builders and a mistyped command fails before any heavy import.
"""

import importlib

import click

from codec.cli_errors import ReportingGroup

COMMANDS = {
    "codec": "codec.cli:codec_group",
    "import": "codec.importers.cli:import_group",
    "serve": "server.serve:serve_command",
    "demo": "bitmatch.demo.command:demo_command",
    "targets": "worker.targets_cli:targets_group",
    "worker": "worker.cli:worker_command",
    "encode-set": "worker.offline_cli:encode_set_command",
    "decode-set": "worker.offline_cli:decode_set_command",
    "replay": "worker.replay_cli:replay_command",
    "aggregate": "bitmatch.ci:aggregate_command",
    "matrix": "bitmatch.ci:matrix_command",
    "suite": "bitmatch.ci:suite_group",
}


def load_command(target: str) -> click.Command:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


class BitmatchGroup(ReportingGroup):
    """The `bitmatch` group: its commands load on demand; every layer's typed errors are a user's mistake,
    reported on one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        return None if target is None else load_command(target)

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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
