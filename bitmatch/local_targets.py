"""Which targets can run on this machine: every registered one that can (or `--targets`), provisioned side by
side where it can be, and why each of the others cannot."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from bitmatch.console import Console, LaunchError

if TYPE_CHECKING:
    from worker.targets import Target


def local_targets(
    console: Console, provision: bool, only: list[str] | None, catalog: list[Target] | None = None
) -> list[str]:
    """Targets of `catalog` (every registered one) that can run here after provisioning what can be
    provisioned, each provisioned in a thread of its own, side by side; prints why others cannot."""
    from worker.targets import all_targets

    catalog = all_targets() if catalog is None else catalog
    unknown = sorted(set(only or ()) - {t.name for t in catalog})
    if unknown:
        raise LaunchError(f"unknown target(s) {unknown}; see `bitmatch targets list`")
    wanted = []
    for target in catalog:
        if only is not None and target.name not in only:
            continue
        if only is None and target.opt_in:
            console.say(f"  {target.name}: not started unless named (--targets {target.name})")
            continue
        wanted.append(target)
    with ThreadPoolExecutor(max_workers=max(1, len(wanted)), thread_name_prefix="provision") as threads:
        reasons = list(threads.map(lambda target: readiness(target, provision, console), wanted))
    for target, reason in zip(wanted, reasons, strict=True):
        console.say(
            f"  {target.name}: available" if reason is None else f"  {target.name}: missing: {reason}"
        )
    return [target.name for target, reason in zip(wanted, reasons, strict=True) if reason is None]


def readiness(target: Target, provision: bool, console: Console) -> str | None:
    """None when the target can run here (after provisioning it, when it can be), else why not."""
    from worker.provision import ProvisionError

    reason = target.check()
    if reason is not None and provision and target.provision_blocker() is None:
        console.say(f"  {target.name}: provisioning (cached after the first time) ...")
        try:
            target.setup()
            reason = target.check()
        except (ProvisionError, OSError, subprocess.SubprocessError) as exc:
            reason = f"provisioning failed: {exc}"
    return reason
