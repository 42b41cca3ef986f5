"""Tokens never on the command line: `--token` is refused by name, `--token-file` and the environment work."""

from click.testing import CliRunner

from bitmatch.cli import cli


def test_a_token_on_the_command_line_is_refused_with_the_way_to_pass_it():
    for command in (["serve"], ["worker", "--target", "cpu"]):
        result = CliRunner().invoke(cli, [*command, "--token", "secret"])
        assert result.exit_code == 2
        assert "visible in `ps`" in result.output and "--token-file" in result.output
        assert "secret" not in result.output


def test_an_empty_or_missing_token_file_is_one_line_naming_it(tmp_path):
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    for path, reason in ((empty, "holds no token"), (tmp_path / "absent.token", "cannot read")):
        result = CliRunner().invoke(cli, ["worker", "--target", "cpu", "--token-file", str(path)])
        assert result.exit_code == 2 and reason in result.output and str(path) in result.output
        assert "Traceback" not in result.output


def test_a_worker_without_any_token_says_where_to_put_one(monkeypatch):
    monkeypatch.delenv("BITMATCH_WORKER_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["worker", "--target", "cpu"])
    assert result.exit_code == 2 and "set BITMATCH_WORKER_TOKEN or pass --token-file" in result.output
