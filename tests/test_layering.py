"""The import direction codec <- worker <- server, read from the source with ast (nothing is imported).

The coordinator (`server/`) talks to workers over HTTP only: of the worker it imports nothing but the
published contract, `worker.contract` and its modules (the wire models and file formats both sides read).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "worker.contract"


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import of a module; `from worker import x` names worker.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """`path:line: module` for every import under `package` of a forbidden package that is not allowed."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if _within(module, forbidden) and not _within(module, allowed):
                found.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def test_the_server_imports_nothing_of_the_worker_but_its_contract():
    wrong = offenders("server", forbidden=("worker",), allowed=(CONTRACT,))
    assert not wrong, "server/ imports worker code beyond worker.contract:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("codec", ("worker", "server")), ("worker", ("server",))],
)
def test_imports_go_one_way_codec_worker_server(package: str, forbidden: tuple[str, ...]):
    wrong = offenders(package, forbidden)
    assert not wrong, f"{package}/ imports {' or '.join(forbidden)}:\n" + "\n".join(wrong)


def test_the_contract_stands_on_the_codec_alone():
    """What the coordinator imports of the worker drags in no other worker module."""
    wrong = offenders("worker/contract", forbidden=("worker", "server"), allowed=(CONTRACT,))
    assert not wrong, "worker/contract/ imports the rest of the worker:\n" + "\n".join(wrong)


def test_the_finder_sees_every_kind_of_import(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "import worker.cli\nfrom worker import fingerprint\nfrom worker.contract import TaskReport\n"
        "from . import sibling\ndef f():\n    from worker.targets import get_target\n"
    )
    assert sorted(module for _, module in imported_modules(source)) == [
        "worker.cli",
        "worker.contract.TaskReport",
        "worker.fingerprint",
        "worker.targets.get_target",
    ]
