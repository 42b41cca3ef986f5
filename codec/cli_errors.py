"""How the command line reports a failure: a user's mistake as one line `error: ...`, a bug as a traceback.

`ReportingGroup` is the click group class of every entry point (`bitmatch`, `python -m codec.train`). In
standalone mode it runs the command and turns

- a click usage error (a bad or missing option value) into `error: MESSAGE (see 'COMMAND --help')`, exit 2;
- any other click error, a typed error of the project (`user_errors()`) or an `OSError` (a file that cannot
  be read or written) into `error: MESSAGE`, exit 1 (or the click error's own exit code);
- Ctrl-C into `error: interrupted`, exit 130;
- anything else, which is a bug, into its traceback followed by one `error: internal error ...` line.

Commands that own an exit-code contract (the CI commands: 2 for an infrastructure failure) still catch
their errors themselves; the group is the guard behind them.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, NoReturn

import click

from codec.errors import CodecError

USAGE_EXIT = 2
FAILURE_EXIT = 1
INTERRUPTED_EXIT = 130


def fail(message: str, exit_code: int = FAILURE_EXIT) -> NoReturn:
    """Print `error: MESSAGE` on stderr and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def describe_os_error(exc: OSError) -> str:
    """`PATH: reason` (both paths for a rename or a copy), or the error's own text when it names no file."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"


def describe_user_error(exc: BaseException) -> str:
    if isinstance(exc, CodecError):
        return f"{exc.code}: {exc}"
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


def describe_usage_error(exc: click.UsageError) -> str:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return exc.format_message() + hint


class ReportingGroup(click.Group):
    """A click group whose standalone run reports failures as described in this module's docstring."""

    def user_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types that mean bad input or a broken environment, never a bug."""
        return (CodecError, OSError)

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except (click.Abort, KeyboardInterrupt, EOFError):
            fail("interrupted", INTERRUPTED_EXIT)
        except click.exceptions.NoArgsIsHelpError as exc:  # a group run bare: its help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            fail(describe_usage_error(exc), exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except Exception as exc:  # sorted into the user's mistakes and our bugs
            self._report_unexpected(exc)
        sys.exit(result if isinstance(result, int) else 0)

    def _report_unexpected(self, exc: Exception) -> NoReturn:
        if isinstance(exc, self.user_errors()):
            fail(describe_user_error(exc))
        traceback.print_exc()
        fail(
            f"internal error (a bug in bitmatch, not in your input): {type(exc).__name__}: {exc}; "
            "please report it with the traceback above"
        )
