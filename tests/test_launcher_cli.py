"""The root `bitmatch` group loads each command on demand, and every listed command loads."""

import subprocess
import sys

import click

from bitmatch.cli import COMMANDS, cli, load_command


def test_every_listed_command_loads_under_its_own_name():
    for name, target in COMMANDS.items():
        command = load_command(target)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_help_lists_every_command():
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)


def test_a_mistyped_command_fails_before_any_codec_import():
    probe = (
        "import sys\n"
        "from bitmatch.cli import main\n"
        "sys.argv = ['bitmatch', 'nosuch']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, 'onnx' in sys.modules, 'numpy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "False", "False"]
    assert "No such command 'nosuch'" in result.stderr
