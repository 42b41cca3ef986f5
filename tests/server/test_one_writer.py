"""One writer per SQLite database, on real processes: a second `bitmatch serve` on the same data directory
exits with a one-line reason, and the first keeps serving."""

import subprocess

import httpx
from server_harness import ROOT, TOKEN, bitmatch_command, free_port, start_coordinator, subprocess_env

from tests.token_files import token_file


def test_a_second_coordinator_on_the_same_data_directory_refuses_to_start(tmp_path):
    first = start_coordinator(tmp_path)
    try:
        second = subprocess.run(
            [
                *bitmatch_command("serve"),
                "--port",
                str(free_port()),
                "--data-dir",
                str(tmp_path / "data"),
                "--token-file",
                token_file(TOKEN),
            ],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert "another coordinator" in second.stderr and "Traceback" not in second.stderr
        assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200
    finally:
        first.stop()
