"""`bitmatch targets ...`: list the device targets and provision them."""

from __future__ import annotations

import json

import click

from worker.provision import ProvisionError, SetupResult
from worker.targets import TARGETS, Target, all_targets, get_target


@click.group(name="targets")
def targets_group() -> None:
    """Device targets: which can run here, and provisioning for the emulated ones."""


@targets_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of targets.")
def list_targets(as_json: bool) -> None:
    """Every target with whether it can run here and, when not, why."""
    rows = [target.describe() for target in all_targets()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        status = "available" if row["available"] else f"unavailable: {row['reason']}"
        click.echo(f"{row['name']:<{width}}  {status}")


@targets_group.command(name="setup")
@click.argument("name", required=False, metavar="NAME[:OPTION]")
@click.option("--all-available", is_flag=True, help="Provision every target that can be provisioned here.")
def setup_targets(name: str | None, all_available: bool) -> None:
    """Install what target NAME needs (e.g. qemu-aarch64 or qemu-aarch64:cortex-a72); idempotent."""
    if bool(name) == all_available:
        raise click.UsageError("give either a target NAME or --all-available")
    if name:
        try:
            target = get_target(name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="NAME") from None
        if not run_setup(target):
            raise SystemExit(1)
        return
    failures = 0
    for target in all_targets():
        blocker = target.provision_blocker()
        if blocker:
            click.echo(f"{target.name}: cannot be provisioned here: {blocker}")
            continue
        failures += not run_setup(target)
    if failures:
        raise SystemExit(1)


def run_setup(target: Target) -> bool:
    try:
        result: SetupResult = target.setup()
    except ProvisionError as exc:
        click.echo(f"{target.name}: setup failed: {exc}", err=True)
        return False
    click.echo(f"{target.name}: {result.action} ({result.seconds:.1f} s)")
    for package, versions in result.details.get("version_mismatches", {}).items():
        click.echo(f"{target.name}: {package} differs from the host venv: {versions}", err=True)
    reason = target.check()
    if reason:
        click.echo(f"{target.name}: still unavailable after setup: {reason}", err=True)
        return False
    return True


__all__ = ["TARGETS", "targets_group"]
