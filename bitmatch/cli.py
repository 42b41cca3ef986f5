"""The `bitmatch` command line: one group per package, assembled here (codec <- worker <- server), and the
launcher's own commands (`demo`, `matrix`, `aggregate`, `suite`).

Each command's module is imported only when that command runs (or when help lists it), so `bitmatch serve`
does not load the codec's ONNX builders and a mistyped command fails before any heavy import.
"""

import importlib
from collections.abc import Iterator, MutableMapping

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


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's name -> command mapping whose commands are imported on first access; membership and
    listing import nothing."""

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = dict(targets)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            self._loaded[name] = load_command(self._targets[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._targets.setdefault(name, "")
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._targets[name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


class BitmatchGroup(ReportingGroup):
    """The `bitmatch` group: its commands load on demand; every layer's typed errors are a user's mistake,
    reported on one line."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(COMMANDS)

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
