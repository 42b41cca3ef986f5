"""Bearer tokens for `bitmatch serve`, `worker` and `demo`: their environment variables, and reading one from
a variable or a file, never from the command line, where every user of the machine can read them in `ps`."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

COORDINATOR_TOKEN_ENV = "BITMATCH_TOKEN"  # what clients and pull workers present to the coordinator
WORKER_TOKEN_ENV = "BITMATCH_WORKER_TOKEN"  # what the coordinator presents to a push worker

F = TypeVar("F", bound=Callable[..., Any])


def token_file_option(envvar: str, help_text: str) -> Callable[[F], F]:
    """`--token-file PATH` (first line of the file), and a hidden `--token` that refuses to take a token."""

    def decorate(function: F) -> F:
        function = click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=f"{help_text} Read from the first line of this file [default: env {envvar}].",
        )(function)
        return click.option(
            "--token",
            hidden=True,
            expose_value=False,
            default=None,
            callback=_refuse_command_line_token(envvar),
        )(function)

    return decorate


def _refuse_command_line_token(envvar: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def refuse(context: click.Context, parameter: click.Parameter, value: Any) -> None:
        if value is not None:
            raise click.UsageError(
                f"--token is not accepted: a token on the command line is visible in `ps`; "
                f"set {envvar} or pass --token-file FILE"
            )

    return refuse


def read_token(token_file: Path | None, envvar: str) -> str | None:
    """The token from `token_file`, else from `envvar`; None when neither gives one. An empty or unreadable
    file is a one-line usage error naming it."""
    if token_file is None:
        value = os.environ.get(envvar, "").strip()
        return value or None
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(
            f"cannot read {token_file}: {_reason(exc)}", param_hint="--token-file"
        ) from None
    value = lines[0].strip() if lines else ""
    if not value:
        raise click.BadParameter(f"{token_file} holds no token", param_hint="--token-file")
    return value


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
