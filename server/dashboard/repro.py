"""The repro bundle of one cell in one zip (layout: worker/bundle.py), with the `bitmatch replay` lines that
replay each side on that side's own target."""

import io
import json
import shlex
import zipfile
from typing import Any

from server.storage import BlobNotFound, BlobStore
from worker.bundle import (
    BITSTREAM_NAME,
    CELL_FILE,
    DECODER_PACKAGE_NAME,
    IMAGE_NAME,
    PACKAGE_NAME,
    RECON_NAMES,
    bundle_name,
)
from worker.replay_setting import ReplayUnavailable, setting_of


def runtime_of(task: dict[str, Any] | None) -> str:
    """The codec runtime a side ran: from its fingerprint, else from its target's definition."""
    if task is None:
        return "ort-cpu"
    runtime = (task.get("fingerprint") or {}).get("runtime")
    if isinstance(runtime, str) and runtime:
        return runtime
    from worker.targets import get_target

    try:
        return get_target(task["target"]).runtime
    except (KeyError, ValueError):
        return "ort-cpu"


def replay_commands(cell: dict[str, Any]) -> dict[str, str]:
    """The `bitmatch replay` lines (both sides, each side) and, secondary, the native host lines."""
    replay = ["bitmatch", "replay", f"{bundle_name(cell)}.zip"]
    decode_package = DECODER_PACKAGE_NAME if cell.get("decoder_codec") else PACKAGE_NAME
    host_decode = ["bitmatch", "codec", "decode", BITSTREAM_NAME, "decoded.png", "--codec", decode_package]
    host_decode += ["--runtime", runtime_of(cell.get("decode")), "--reference", IMAGE_NAME, "--json"]
    host_encode = ["bitmatch", "codec", "encode", IMAGE_NAME, "reencoded.bmc", "--codec", PACKAGE_NAME]
    host_encode += ["--runtime", runtime_of(cell.get("encode")), "--reconstruct", "--json"]
    return {
        "replay": shlex.join(replay),
        "encoder": shlex.join([*replay, "--side", "encoder"]),
        "decoder": shlex.join([*replay, "--side", "decoder"]),
        "host_decode": shlex.join(host_decode),
        "host_encode": shlex.join(host_encode),
    }


def side_targets(cell: dict[str, Any]) -> dict[str, str]:
    """Where `bitmatch replay` runs each side: target, runtime, -cpu model, thread variables."""
    described = {}
    for side, key in (("encoder", "encode"), ("decoder", "decode")):
        recorded = cell.get(key)
        try:
            described[side] = setting_of(recorded).describe() if recorded else "no task recorded"
        except ReplayUnavailable as exc:
            described[side] = f"cannot be replayed: {exc}"
    return described


def build_bundle(cell: dict[str, Any], store: BlobStore) -> bytes:
    """A zip holding the package archive(s), the bitstream, the source image, both reconstructions (when
    returned), both fingerprints, the cell record, replay.sh and a README with the replay lines."""
    root = bundle_name(cell)
    encode, decode = cell.get("encode") or {}, cell.get("decode") or {}
    blobs = {
        PACKAGE_NAME: cell.get("codec_archive"),
        BITSTREAM_NAME: cell.get("bitstream"),
        IMAGE_NAME: cell.get("image_png"),
        RECON_NAMES["encoder"]: encode.get("recon"),
        RECON_NAMES["decoder"]: decode.get("recon"),
    }
    if cell.get("decoder_codec"):
        blobs[DECODER_PACKAGE_NAME] = cell.get("decoder_codec_archive")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        missing = []
        for name, digest in blobs.items():
            data = _blob(store, digest)
            if data is None:
                missing.append(name)
            else:
                archive.writestr(f"{root}/{name}", data)
        for side, task in (("encoder", encode), ("decoder", decode)):
            archive.writestr(f"{root}/{side}-fingerprint.json", _json(task.get("fingerprint")))
        archive.writestr(f"{root}/{CELL_FILE}", _json(cell))
        archive.writestr(_executable(f"{root}/replay.sh"), REPLAY_SCRIPT)
        archive.writestr(f"{root}/README.txt", _readme(cell, replay_commands(cell), missing))
    return buffer.getvalue()


REPLAY_SCRIPT = """#!/bin/sh
# Replays both sides of this cell, each on its own target: the encode on the encoder's, the decode of
# bits.bmc on the decoder's (natively or under that target's emulator, with its -cpu model, runtime and
# thread settings), and compares them with cell.json. Arguments go to `bitmatch replay`: --side decoder,
# --json, --out DIR. Exit 0: reproduced, 1: not reproduced, 2: could not run here.
exec bitmatch replay "$(dirname "$0")" "$@"
"""


def _executable(name: str) -> zipfile.ZipInfo:
    """A member unzip extracts as rwxr-xr-x (the mode lives in the high bits of external_attr)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o100755 << 16
    return info


def _blob(store: BlobStore, digest: str | None) -> bytes | None:
    try:
        return store.get(digest) if digest else None
    except (BlobNotFound, ValueError):
        return None


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str) + "\n"


def _readme(cell: dict[str, Any], commands: dict[str, str], missing: list[str]) -> str:
    targets = side_targets(cell)
    lines = [
        f"bitmatch repro bundle: job {cell['job']}, cell {cell['id']}",
        f"codec {cell['codec_name']} ({cell['codec']}), image {cell['image_name']}",
        f"encoder {cell['encoder']} -> decoder {cell['decoder']}: {cell['verdict']}",
        "",
        "Replay both sides, each on its own target, and compare them with the recorded stage hashes,",
        "reconstructions and bitstream (exit 0 reproduced, 1 not, 2 could not run here: a target that is not",
        "provisioned says which `bitmatch targets setup NAME` to run):",
        f"  {commands['replay']}        (or ./replay.sh in the extracted folder)",
        f"The encoder side alone, on {targets['encoder']}:",
        f"  {commands['encoder']}",
        f"The decoder side alone, on {targets['decoder']}:",
        f"  {commands['decoder']}",
        "",
        "On the host, without the target (natively on this machine's CPU: not the recorded device, so an",
        "emulated or other-device side may well give other results):",
        f"  {commands['host_decode']}",
        f"  {commands['host_encode']}",
    ]
    if missing:
        lines += ["", f"Not available on the coordinator, left empty: {', '.join(missing)}"]
    return "\n".join(lines) + "\n"
