"""docs/architecture.md's module tables are what the modules' own first docstring paragraphs say."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "docs" / "module_table.py"


def test_every_module_says_what_it_owns():
    silent = [
        str(path.relative_to(ROOT))
        for package in ("codec", "worker", "server", "bitmatch")
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        and not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert silent == []


def test_the_module_tables_are_up_to_date():
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
