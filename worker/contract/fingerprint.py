"""The identity of a device fingerprint (what `GET /v1/info` reports, worker/fingerprint.py collects it):
SHA-256 of its canonical JSON. The coordinator stores one row per digest; results name it."""

import hashlib
import json
from typing import Any


def fingerprint_sha256(info: dict[str, Any]) -> str:
    """SHA-256 of the fingerprint's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(info, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
