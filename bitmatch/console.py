"""How the launcher speaks: where its messages go (Console) and the one error that stops a launch."""

from dataclasses import dataclass

import click


class LaunchError(click.ClickException):
    """Something the demo or a matrix run needs failed; the message says what, and everything started is
    stopped."""


@dataclass
class Console:
    """Tables and messages go to stderr in --json mode (stdout holds only the JSON), else to stdout; a job's
    progress always goes to stderr (server/progress.py)."""

    json_mode: bool

    def say(self, text: str = "") -> None:
        click.echo(text, err=self.json_mode)
