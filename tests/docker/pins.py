"""The versions the images install (docker/constraints.txt): bitmatch's base dependencies, transitively, as
pinned in the project virtualenv; `python -m tests.docker.pins` prints the file."""

from worker.provision import host_pins

HEADER = (
    "# The versions the images install: the base dependencies of bitmatch as pinned in the project\n"
    "# virtualenv (regenerate with `python -m tests.docker.pins > docker/constraints.txt`;\n"
    "# tests/worker/test_docker.py checks)."
)


def constraint_lines() -> list[str]:
    pins = host_pins(["bitmatch"])
    pins.pop("bitmatch")
    return [f"{name}=={version}" for name, version in pins.items()]


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(constraint_lines()))
