"""A private Docker engine for the stack test: the Debian tools it needs, qemu-aarch64 in binfmt_misc, a
dockerd of its own (socket, data-root and exec-root under one state directory; no system service is touched)
and the bookworm base images, made by mmdebstrap and `docker load` because nothing is pulled."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE = Path(os.environ.get("BITMATCH_DOCKER_DIR", "/var/tmp/bitmatch-docker"))
SOCKET = STATE / "docker.sock"
TOOLS = {
    "dockerd": "docker.io",
    "mmdebstrap": "mmdebstrap",
    "arch-test": "arch-test",
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
    "docker-compose": "docker-compose",
}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BASE_PACKAGES = "python3,python3-venv,ca-certificates,passwd"
ARCHES = ("amd64", "arm64")


class DockerStackError(RuntimeError):
    """The engine, an image build or the stack failed; the message says which step and why."""


def run(argv: list[str], *, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        tail = (result.stderr or result.stdout)[-3000:]
        raise DockerStackError(f"{' '.join(argv[:4])} ... exited {result.returncode}:\n{tail}")
    return result


def docker_cli() -> str:
    """Debian's client first: its BuildKit is built in, while a newer client would want the buildx plugin."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker") or "docker"


def engine_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "DOCKER_BUILDKIT": "1"}


def docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    return run([docker_cli(), *args], check=check, env=engine_env(), timeout=timeout)


def ensure_tools() -> None:
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise DockerStackError(f"missing Debian packages {missing}; installing them needs root")
    run(["apt-get", "update", "-q"])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def ensure_binfmt() -> None:
    """qemu-aarch64 registered with the F flag, so that containers (other mount namespaces) can use it."""
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    text = entry.read_text() if entry.exists() else ""
    flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags:")), "")
    if not text.startswith("enabled") or "F" not in flags:
        raise DockerStackError(f"qemu-aarch64 is not an enabled binfmt_misc entry with flag F:\n{text}")


def engine_answers() -> bool:
    return SOCKET.exists() and docker("info", check=False, timeout=30).returncode == 0


@contextmanager
def private_dockerd(start_timeout: float = 90) -> Iterator[None]:
    """dockerd on STATE/docker.sock for the duration; vfs storage, no iptables, no default bridge."""
    STATE.mkdir(parents=True, exist_ok=True)
    log = (STATE / "dockerd.log").open("ab")
    argv = ["dockerd", "--storage-driver", "vfs", "--iptables=false", "--bridge=none"]
    argv += ["-H", f"unix://{SOCKET}", "--data-root", str(STATE / "data"), "--exec-root", str(STATE / "exec")]
    argv += ["--pidfile", str(STATE / "dockerd.pid")]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DockerStackError(f"dockerd did not start; see {STATE / 'dockerd.log'}")
            time.sleep(1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def base_tag(arch: str) -> str:
    return f"bitmatch-base:bookworm-{arch}"


def ensure_base(arch: str) -> str:
    """The bookworm base for arch (amd64, arm64) as a local image; the mmdebstrap tar is kept for re-runs."""
    tag = base_tag(arch)
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    tar = STATE / "bases" / f"base-{arch}.tar"
    if not tar.exists():
        tar.parent.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial")
        argv = ["mmdebstrap", "--variant=apt", f"--architectures={arch}", f"--include={BASE_PACKAGES}"]
        run(["nice", "-n", "10", *argv, "bookworm", str(partial)])
        partial.rename(tar)
    load_rootfs(tar, arch, tag)
    found = docker("image", "inspect", "--format", "{{.Architecture}}", tag).stdout.strip()
    if found != arch:
        raise DockerStackError(f"{tag} was imported as {found}, not {arch}")
    return tag


def load_rootfs(rootfs: Path, arch: str, tag: str) -> None:
    """`docker load` of a one-layer image archive around the rootfs tar, its config naming arch: `docker
    import --platform` records the daemon's own architecture on a daemon that is not multi-platform."""
    digest = hashlib.sha256()
    with rootfs.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created_by": f"mmdebstrap --include={BASE_PACKAGES} bookworm"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    archive = rootfs.with_name(f"image-{arch}.tar")
    with tarfile.open(archive, "w") as image:
        image.add(rootfs, arcname="layer.tar")
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            image.addfile(member, io.BytesIO(data))
    try:
        docker("load", "-i", str(archive))
    finally:
        archive.unlink()
