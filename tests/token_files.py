"""Tokens for the processes tests start: in files (`--token-file`), as the CLI requires, never in argv."""

import hashlib
import tempfile
from pathlib import Path

_DIRECTORY = Path(tempfile.mkdtemp(prefix="bitmatch-test-tokens-"))


def token_file(token: str) -> str:
    """The path of a file holding `token` (one per distinct token, private to this test process)."""
    path = _DIRECTORY / hashlib.sha256(token.encode()).hexdigest()[:16]
    if not path.exists():
        path.write_text(token + "\n")
        path.chmod(0o600)
    return str(path)
