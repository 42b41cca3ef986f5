"""The versions the images install (docker/constraints.txt): bitmatch's base dependencies, transitively, as
pinned in the project virtualenv; `python -m tests.docker.pins` prints the file."""

from worker.provision import host_pins

HEADER = (
    "# The versions of bitmatch's base dependencies, which the Makefile's venv and the images install\n"
    "# (regenerate with `python -m tests.docker.pins > docker/constraints.txt` after an upgrade;\n"
    "# tests/worker/test_docker.py checks that the virtualenv has them)."
)


def constraint_lines() -> list[str]:
    pins = host_pins(["bitmatch"])
    pins.pop("bitmatch")
    return [f"{name}=={version}" for name, version in pins.items()]


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(constraint_lines()))
