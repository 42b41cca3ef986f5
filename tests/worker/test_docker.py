"""docker/ and compose.yaml, checked without a Docker engine: every Dockerfile and the compose file are
parsed, and what they reference (files, `bitmatch` commands and options, ports, environment variables, the
workers config) must exist and agree with the CLI and the code."""

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest
import yaml

from worker.contract.tokens import WORKER_TOKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = ROOT / "compose.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = {
    "worker-cpu": DOCKER / "worker-cpu.Dockerfile",
    "worker-arm64": DOCKER / "worker-arm64.Dockerfile",
    "worker-cuda": DOCKER / "worker-cuda.Dockerfile",
    "coordinator": DOCKER / "coordinator.Dockerfile",
}
SOURCE_DIRS = ("codec", "worker", "server", "bitmatch")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# --- a small Dockerfile reader ----------------------------------------------------------------------


@dataclass
class Dockerfile:
    path: Path
    instructions: list[tuple[str, str]]
    build_args: dict[str, str] = field(default_factory=dict)
    base: str = ""
    platform: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return self.entrypoint + self.cmd


def logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the file ends inside a continued line"
    return lines


def parse_env(args: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(args):
        name, sep, value = token.partition("=")
        assert sep, f"ENV {args!r}: use the NAME=value form"
        pairs[name] = value
    return pairs


def exec_form(args: str, what: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what} must be exec form"
    return value


def parse_dockerfile(path: Path) -> Dockerfile:
    text = path.read_text()
    parsed = Dockerfile(path, [])
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        parsed.instructions.append((keyword, args))
        if keyword == "ARG" and not parsed.base:  # an ARG before the first FROM parameterises FROM
            name, _, default = args.partition("=")
            parsed.build_args[name] = default
        elif keyword == "FROM":  # the last FROM is the image's stage: its base and platform
            tokens = args.split()
            flags = [t for t in tokens if t.startswith("--")]
            parsed.platform = next((f.split("=", 1)[1] for f in flags if f.startswith("--platform=")), None)
            base = next(t for t in tokens if not t.startswith("--"))
            parsed.base = INTERPOLATION.sub(lambda m: parsed.build_args.get(m.group(1), ""), base)
        elif keyword == "ENV":
            parsed.env.update(parse_env(args))
        elif keyword == "COPY" and not args.startswith("--from="):  # from the build context
            tokens = [t for t in shlex.split(args) if not t.startswith("--")]
            parsed.copies.append((tokens[:-1], tokens[-1]))
        elif keyword == "RUN":
            parsed.runs.append(args)
        elif keyword == "EXPOSE":
            parsed.expose += [int(p.split("/")[0]) for p in args.split()]
        elif keyword == "ENTRYPOINT":
            parsed.entrypoint = exec_form(args, "ENTRYPOINT")
        elif keyword == "CMD":
            parsed.cmd = exec_form(args, "CMD")
        elif keyword == "HEALTHCHECK":
            parsed.healthcheck = exec_form(args[args.index("CMD ") + 4 :], "HEALTHCHECK CMD")
    keywords = [keyword for keyword, _ in parsed.instructions]
    assert "FROM" in keywords and set(keywords[: keywords.index("FROM")]) <= {"ARG"}, (
        f"{path.name}: FROM first"
    )
    return parsed


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, Dockerfile]:
    return {name: parse_dockerfile(path) for name, path in DOCKERFILES.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# --- the `bitmatch` command line, as click defines it --------------------------------------------------


def bitmatch_cli() -> click.Group:
    from bitmatch.cli import cli

    return cli


def resolve_command(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an argv names, and its remaining arguments."""
    scripts = PYPROJECT["project"]["scripts"]
    assert argv and argv[0] in scripts, f"{argv[:1]} is not a console script of pyproject.toml"
    command, rest = bitmatch_cli(), list(argv[1:])
    path = [argv[0]]
    while isinstance(command, click.Group):
        assert rest, f"`{' '.join(path)}` needs a subcommand"
        context = click.Context(command)  # the group loads its commands on demand
        assert rest[0] in command.list_commands(context), f"`{' '.join(path)}` has no subcommand {rest[0]!r}"
        path.append(rest[0])
        command = command.get_command(context, rest.pop(0))
    return command, rest


def check_arguments(argv: list[str], env: dict[str, str]) -> dict[str, str | bool]:
    """Validate argv against the click command's parameters, required options included (as arguments or
    through their environment variables); returns {param name: value given}."""
    command, _ = resolve_command(argv)
    given = parse_arguments(argv)
    for param in command.params:
        if isinstance(param, click.Option) and param.required and param.name not in given:
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            assert any(v in env for v in envvars), (
                f"{command.name}: {param.opts[0]} is required, neither given nor set through {envvars}"
            )
    return given


def parse_arguments(argv: list[str]) -> dict[str, str | bool]:
    """{param name: value} of the options in argv; unknown options and values of the wrong type fail."""
    command, args = resolve_command(argv)
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    positionals = [p for p in command.params if isinstance(p, click.Argument)]
    given: dict[str, str | bool] = {}
    index, positional_count = 0, 0
    while index < len(args):
        token = args[index]
        if not token.startswith("-"):
            positional_count += 1
            index += 1
            continue
        name, has_inline, inline = token.partition("=")
        assert name in options, f"{command.name}: no option {name}; it has {sorted(options)}"
        param = options[name]
        if param.is_flag:
            given[param.name], index = True, index + 1
            continue
        assert has_inline or index + 1 < len(args), f"{command.name}: {name} needs a value"
        value = inline if has_inline else args[index + 1]
        index += 1 if has_inline else 2
        if not isinstance(param.type, click.Path):  # paths live in the image, not here
            param.type.convert(value, param, None)
        given[param.name] = value
    assert positional_count == len(positionals), f"{command.name}: {positional_count} positional arguments"
    return given


def option_envvars(argv: list[str]) -> dict[str, click.Option]:
    command, _ = resolve_command(argv)
    envvars = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            for name in [param.envvar] if isinstance(param.envvar, str) else param.envvar:
                envvars[name] = param
    return envvars


def names_read_by_code() -> set[str]:
    """BITMATCH_* names that appear as string literals in the project's sources."""
    names = set()
    for directory in SOURCE_DIRS:
        for source in (ROOT / directory).rglob("*.py"):
            names.update(re.findall(r"[\"'](BITMATCH_[A-Z0-9_]+)[\"']", source.read_text()))
    return names


def effective_setting(argv: list[str], env: dict[str, str], option: str) -> str:
    """What an option ends up as: the argument, else its environment variable, else its default."""
    command, _ = resolve_command(argv)
    given = parse_arguments(argv)
    param = next(p for p in command.params if isinstance(p, click.Option) and option in p.opts)
    if param.name in given:
        return str(given[param.name])
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    for name in envvars:
        if name in env:
            return env[name]
    return str(param.default)


def names_read_through_workers_configs() -> set[str]:
    """Variables the coordinator reads because a docker/workers*.json entry names them in token_env."""
    names = set()
    for path in (ROOT / "docker").glob("workers*.json"):
        entries = json.loads(path.read_text())["workers"]
        names |= {entry["token_env"] for entry in entries if "token_env" in entry}
    return names


def check_environment(argv: list[str], env: dict[str, str], where: str) -> None:
    envvars = option_envvars(argv)
    code_names = names_read_by_code() | names_read_through_workers_configs()
    for name, value in env.items():
        if not name.startswith("BITMATCH_"):
            continue
        assert name in envvars or name in code_names, f"{where}: {name} is no option's envvar and unused"
        if name in envvars and not isinstance(envvars[name].type, click.Path):
            envvars[name].type.convert(value, envvars[name], None)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults (no variable is set for the check)."""

    def replace(match: re.Match) -> str:
        assert match.group(2) is not None, f"${{{match.group(1)}}} has no default: `docker compose up` fails"
        return match.group(2)

    return INTERPOLATION.sub(replace, value)


def healthcheck_url(dockerfile: Dockerfile) -> str:
    script = " ".join(dockerfile.healthcheck)
    match = re.search(r"https?://[^'\"\s]+", script)
    assert match, f"{dockerfile.path.name}: the HEALTHCHECK must fetch a URL"
    return match.group(0)


# --- Dockerfiles --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_existing_files_that_make_an_installable_project(dockerfiles, name):
    dockerfile = dockerfiles[name]
    copied = set()
    for sources, _ in dockerfile.copies:
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.path.name}: COPY {source}: not in the repo"
            copied.add(source.rstrip("/"))
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
    needed = {p.rstrip("*") for p in packages} | {"pyproject.toml", PYPROJECT["project"]["readme"]}
    assert needed <= copied, f"{dockerfile.path.name} does not copy {sorted(needed - copied)}"
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in dockerfile.runs)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runs_a_bitmatch_command_the_cli_accepts(dockerfiles, name):
    dockerfile = dockerfiles[name]
    assert dockerfile.entrypoint[:1] == ["bitmatch"]
    check_arguments(dockerfile.argv, {**dockerfile.env, "BITMATCH_WORKER_TOKEN": "set-at-run-time"})
    check_environment(dockerfile.argv, dockerfile.env, dockerfile.path.name)
    for run in dockerfile.runs:
        for segment in re.split(r"&&|;|\|\|", run):
            tokens = shlex.split(segment)
            if tokens[:1] == ["bitmatch"]:
                check_arguments(tokens, dockerfile.env)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_exposes_and_health_checks_the_port_it_listens_on(dockerfiles, name, tmp_path):
    dockerfile = dockerfiles[name]
    port = int(effective_setting(dockerfile.argv, dockerfile.env, "--port"))
    assert dockerfile.expose == [port]
    url = urlparse(healthcheck_url(dockerfile))
    assert url.port == port and url.hostname == "127.0.0.1"
    host = effective_setting(dockerfile.argv, dockerfile.env, "--host")
    assert host == "0.0.0.0", f"{dockerfile.path.name}: listening on {host} is unreachable from outside"
    expected_path = "/healthz" if name.startswith("worker") else "/openapi.json"
    assert url.path == expected_path
    if name.startswith("worker"):
        assert url.path in worker_routes(tmp_path)


def worker_routes(cache_dir: Path) -> set[str]:
    """The paths the worker app serves (the app is built, not started: no compute process runs)."""
    from worker.app import WorkerSettings, create_app
    from worker.supervisor import ComputeLaunch

    settings = WorkerSettings(
        target="cpu", token="t", cache_dir=cache_dir, launch=ComputeLaunch(argv=["false"])
    )
    return set(create_app(settings).openapi()["paths"])


def test_images_are_built_on_the_intended_bases(dockerfiles):
    assert dockerfiles["worker-cpu"].base == "python:3.11-slim-bookworm"
    assert dockerfiles["coordinator"].base == "python:3.11-slim-bookworm"
    arm64 = dockerfiles["worker-arm64"]
    assert (arm64.base, arm64.platform) == ("python:3.11-slim-bookworm", "linux/arm64")
    cuda = dockerfiles["worker-cuda"]
    assert cuda.base.startswith("nvidia/cuda:") and "runtime" in cuda.base and "cudnn" in cuda.base


@pytest.mark.parametrize("name", ["worker-cpu", "worker-arm64", "coordinator"])
def test_python_images_are_two_stages_on_one_base_pinned_torch_free_and_not_root(dockerfiles, name):
    dockerfile = dockerfiles[name]
    stages = [args for keyword, args in dockerfile.instructions if keyword == "FROM"]
    assert len(stages) == 2 and all("${BASE}" in stage for stage in stages), "build stage + final stage"
    assert "BASE" in dockerfile.build_args, "tests/docker/stack.py passes a locally built base as BASE"
    runs = " ".join(dockerfile.runs)
    assert "--constraint constraints.txt" in runs and "[train]" not in runs and "torch" not in runs
    users = [args for keyword, args in dockerfile.instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_image_constraints_are_the_virtualenv_pins():
    from tests.docker.pins import constraint_lines

    committed = [
        line for line in (DOCKER / "constraints.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert committed == constraint_lines(), "regenerate: python -m tests.docker.pins > docker/constraints.txt"


def test_each_worker_image_runs_its_target(dockerfiles):
    from worker.targets import TARGETS

    expected = {"worker-cpu": "cpu", "worker-arm64": "cpu", "worker-cuda": "cuda"}
    for name, target in expected.items():
        dockerfile = dockerfiles[name]
        assert effective_setting(dockerfile.argv, dockerfile.env, "--target") == target
        assert target in TARGETS


def test_cuda_image_installs_the_gpu_wheel_pyproject_names(dockerfiles):
    cuda_extra = PYPROJECT["project"]["optional-dependencies"]["cuda"]
    runs = " ".join(dockerfiles["worker-cuda"].runs)
    for requirement in cuda_extra:
        assert f'pip install "{requirement}"' in runs
    assert "pip uninstall -y onnxruntime" in runs  # the CPU wheel would shadow the GPU one


def test_coordinator_image_holds_its_health_package(dockerfiles):
    coordinator = dockerfiles["coordinator"]
    package = effective_setting(coordinator.argv, coordinator.env, "--health-package")
    assert any(f"--out {package}" in run for run in coordinator.runs)


# --- compose.yaml --------------------------------------------------------------------------------


def service_image(compose: dict, service: str, dockerfiles: dict[str, Dockerfile]) -> Dockerfile:
    build = compose["services"][service]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    path = (ROOT / build["context"] / build["dockerfile"]).resolve()
    assert path.is_file(), f"{service}: no Dockerfile {path}"
    return next(d for d in dockerfiles.values() if d.path.resolve() == path)


def service_argv_env(compose: dict, service: str, dockerfile: Dockerfile) -> tuple[list[str], dict[str, str]]:
    spec = compose["services"][service]
    command = spec.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    args = command if command is not None else dockerfile.cmd
    argv = dockerfile.entrypoint + [interpolate(str(a)) for a in args]
    env = {**dockerfile.env, **{k: interpolate(str(v)) for k, v in (spec.get("environment") or {}).items()}}
    return argv, env


def test_compose_wires_the_coordinator_with_cpu_and_arm64_workers(compose):
    services = compose["services"]
    default = {name for name, spec in services.items() if not spec.get("profiles")}
    assert default == {"coordinator", "worker-cpu", "worker-arm64"}
    assert set(services["coordinator"]["depends_on"]) == {"worker-cpu", "worker-arm64"}
    arm64 = services["worker-arm64"]
    assert arm64["platform"] == "linux/arm64"
    assert "platforms" not in arm64["build"], "docker-compose 1.29 rejects build.platforms"
    assert "name" not in compose, "docker-compose 1.29 rejects a top-level name"


def test_gpu_profile_adds_the_cuda_worker_with_a_device_reservation(compose):
    cuda = compose["services"]["worker-cuda"]
    assert cuda["profiles"] == ["gpu"]
    devices = cuda["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


@pytest.mark.parametrize("service", ["coordinator", "worker-cpu", "worker-arm64", "worker-cuda"])
def test_compose_service_command_environment_and_ports_match_the_cli(compose, dockerfiles, service):
    dockerfile = service_image(compose, service, dockerfiles)
    argv, env = service_argv_env(compose, service, dockerfile)
    check_arguments(argv, env)
    check_environment(argv, env, f"compose service {service}")
    port = int(effective_setting(argv, env, "--port"))
    assert port in dockerfile.expose
    spec = compose["services"][service]
    for exposed in spec.get("expose", []):
        assert int(exposed) == port
    for mapping in spec.get("ports", []):
        assert int(str(mapping).split(":")[-1]) == port
        assert str(mapping).startswith("127.0.0.1:"), "publish on loopback only"
    for volume in spec.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")):
            assert (ROOT / source).exists(), f"{service}: bind mount source {source} does not exist"
        else:
            assert source in compose["volumes"], f"{service}: named volume {source} is not declared"


def workers_config_files(compose: dict) -> dict[str, Path]:
    """Container path -> repo file, for the coordinator's bind-mounted workers configs."""
    mounts = {}
    for volume in compose["services"]["coordinator"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def test_workers_configs_reach_the_compose_workers_with_their_tokens(compose, dockerfiles):
    from server.devices import load_workers_config
    from worker.fingerprint import device_class

    coordinator = service_image(compose, "coordinator", dockerfiles)
    argv, env = service_argv_env(compose, "coordinator", coordinator)
    mounts = workers_config_files(compose)
    default_config = effective_setting(argv, env, "--workers-config")
    assert default_config in mounts, f"--workers-config {default_config} is not mounted into the coordinator"
    gpu_config = next(path for target, path in mounts.items() if "gpu" in target)
    worker_services = {name for name in compose["services"] if name.startswith("worker-")}
    expectations = {mounts[default_config]: {"worker-cpu", "worker-arm64"}, gpu_config: worker_services}
    for path, expected_services in expectations.items():
        specs = load_workers_config(path, environ=env)  # token_env resolves in the coordinator's env
        assert {urlparse(spec.url).hostname for spec in specs} == expected_services, path.name
        for spec in specs:
            service = urlparse(spec.url).hostname
            dockerfile = service_image(compose, service, dockerfiles)
            worker_argv, worker_env = service_argv_env(compose, service, dockerfile)
            assert urlparse(spec.url).port == int(effective_setting(worker_argv, worker_env, "--port"))
            assert "--token" not in worker_argv, f"{service}: a token on the command line is visible in ps"
            assert spec.token == worker_env[WORKER_TOKEN_ENV]
            machine = "aarch64" if "arm64" in service else "x86_64"
            worker_target = effective_setting(worker_argv, worker_env, "--target")
            assert spec.target == device_class(worker_target, machine)


def test_bitmatch_registers_the_commands_the_images_run():
    cli = bitmatch_cli()
    context = click.Context(cli)
    assert {"worker", "serve", "codec"} <= set(cli.list_commands(context))
    from worker.cli import worker_command

    assert cli.get_command(context, "worker") is worker_command
