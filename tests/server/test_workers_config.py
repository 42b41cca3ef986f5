"""The workers config file: literal tokens, tokens named by an environment variable, clear refusals."""

import json

import pytest
from click.testing import CliRunner

from server.devices import load_workers_config
from server.serve import serve_command


def _config(tmp_path, *entries: dict):
    path = tmp_path / "workers.json"
    path.write_text(json.dumps({"workers": list(entries)}))
    return path


def test_token_env_reads_the_token_from_the_environment(tmp_path):
    path = _config(
        tmp_path,
        {"url": "http://a:8200", "token": "literal"},
        {"name": "b", "url": "http://b:8200", "token_env": "B_TOKEN", "target": "cpu"},
    )
    first, second = load_workers_config(path, environ={"B_TOKEN": "from-env"})
    assert (first.name, first.token) == ("http://a:8200", "literal")
    assert (second.name, second.token, second.target) == ("b", "from-env", "cpu")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "http://a:8200", "token_env": "UNSET_TOKEN"}, "UNSET_TOKEN"),
        ({"url": "http://a:8200", "token": "x", "token_env": "A"}, "either token or token_env"),
    ],
)
def test_bad_token_settings_are_refused_with_the_reason(tmp_path, entry, message):
    with pytest.raises(ValueError, match=message):
        load_workers_config(_config(tmp_path, entry), environ={"A": "a"})


def test_serve_refuses_a_config_whose_token_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    path = _config(tmp_path, {"url": "http://a:8200", "token_env": "UNSET_TOKEN"})
    result = CliRunner().invoke(serve_command, ["--workers-config", str(path), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "UNSET_TOKEN" in result.output
