"""Helpers for the coordinator tests: seeded codec packages and real worker and coordinator processes on
loopback (`bitmatch worker`, `bitmatch serve`). Imported by name: the test directories have no packages."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import httpx

from tests.token_files import token_file

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "coordinator-test-token"
WORKER_TOKEN = "worker-test-token"
START_TIMEOUT_S = 900.0  # emulated targets start numpy and onnxruntime under qemu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


FALLBACK_ENTRY_POINTS = {
    "worker": ("worker.cli", "worker_command"),
    "targets": ("worker.targets_cli", "targets_group"),
}


def bitmatch_command(subcommand: str) -> list[str]:
    """`bitmatch SUBCOMMAND` run by this interpreter (targets record which interpreter they were proven with),
    or the subcommand's entry point while bitmatch/cli.py does not register it yet."""
    from bitmatch.cli import cli

    if subcommand not in cli.commands and subcommand in FALLBACK_ENTRY_POINTS:
        module, name = FALLBACK_ENTRY_POINTS[subcommand]
        return [
            sys.executable,
            "-c",
            f"import sys; from {module} import {name}; sys.argv[0] = 'bitmatch {subcommand}'; {name}()",
        ]
    return [
        sys.executable,
        "-c",
        "import sys; from bitmatch.cli import main; sys.argv[0] = 'bitmatch'; main()",
        subcommand,
    ]


def ensure_target(name: str) -> None:
    """Provision an emulated target (`bitmatch targets setup`, idempotent and cached), never skip it."""
    subprocess.run(
        [*bitmatch_command("targets"), "setup", name],
        cwd=ROOT,
        env=subprocess_env(),
        check=True,
        timeout=3600,
        capture_output=True,
    )


class Process:
    """A long-running `bitmatch` subprocess on 127.0.0.1 with its log in a file."""

    def __init__(self, argv: list[str], log_path: Path, url: str) -> None:
        self.argv, self.log_path, self.url = argv, log_path, url
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=subprocess_env(), stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "Process":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                command = " ".join(self.argv[-8:])
                raise RuntimeError(f"{command} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.url} did not come up within {timeout} s:\n{self.log()}")

    def kill_hard(self) -> None:
        """SIGKILL: no shutdown handler runs, exactly like a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


def start_worker(target: str, workdir: Path) -> Process:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    # The default cache directory: it holds the proof that an emulated target was provisioned here.
    argv = [
        *bitmatch_command("worker"),
        "--target",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-file",
        token_file(WORKER_TOKEN),
    ]
    return Process(argv, workdir / f"worker-{target}-{port}.log", f"http://127.0.0.1:{port}")


def start_coordinator(workdir: Path, *extra: str, port: int | None = None) -> Process:
    port = port or free_port()
    argv = [
        *bitmatch_command("serve"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(workdir / "data"),
        "--token-file",
        token_file(TOKEN),
        "--health-interval",
        "3600",
        "--log-level",
        "warning",
        *extra,
    ]
    return Process(argv, workdir / "coordinator.log", f"http://127.0.0.1:{port}").wait_ready(120)


def build_package(out_dir: Path, precision: str, seed: int = 11) -> SimpleNamespace:
    from codec.build import build_random
    from codec.package import CodecPackage, archive_bytes

    digest = build_random(out_dir, precision, 8, 8, seed, 64)
    return SimpleNamespace(
        path=out_dir, digest=digest, archive=archive_bytes(CodecPackage.load(out_dir)), precision=precision
    )


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


class _References(HTMLParser):
    """Every URL an HTML document refers to (attributes and CSS url(...)), and every id it defines."""

    URL_ATTRIBUTES = frozenset(
        {"href", "src", "srcset", "action", "formaction", "poster", "data", "xlink:href", "background"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            elif name in self.URL_ATTRIBUTES and value is not None:
                self.urls.append(value)
            elif name == "style" and value:
                self.urls += css_urls(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += css_urls(data)


def css_urls(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]*)", css) + re.findall(r"@import\s+['\"]([^'\"]+)", css)
    return [url.strip() for url in found]


def html_references(html: str) -> tuple[list[str], set[str]]:
    """(every URL the document refers to, every id it defines)."""
    parser = _References()
    parser.feed(html)
    return parser.urls, parser.ids


def outside_references(html: str) -> list[str]:
    """The references that need something outside the file: anything but a data: URI or an anchor that
    exists in the document."""
    urls, ids = html_references(html)
    return [url for url in urls if not (url.startswith("data:") or (url.startswith("#") and url[1:] in ids))]


def placeholder_codec():  # -> server.models.Codec
    """A codec row for tests of the queue and the records: digest a..a, archive b..b, nothing behind it."""
    from server.models import Codec

    return Codec(
        digest="a" * 64,
        name="c",
        precision="int16",
        architecture="x",
        manifest={},
        archive_sha256="b" * 64,
        size=1,
    )
