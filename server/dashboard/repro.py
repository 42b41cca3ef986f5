"""The repro bundle of one cell: everything needed to replay its decode on another machine, in one zip."""

import io
import json
import shlex
import zipfile
from typing import Any

from server.storage import BlobNotFound, BlobStore

PACKAGE_NAME, BITSTREAM_NAME, IMAGE_NAME = "codec.tar", "bits.bmc", "image.png"


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
    """The exact `bitmatch` lines that replay both sides of the cell from the bundle's files."""
    decode_runtime, encode_runtime = runtime_of(cell.get("decode")), runtime_of(cell.get("encode"))
    decode = [
        "bitmatch",
        "codec",
        "decode",
        BITSTREAM_NAME,
        "decoded.png",
        "--codec",
        PACKAGE_NAME,
        "--runtime",
        decode_runtime,
        "--reference",
        IMAGE_NAME,
        "--json",
    ]
    encode = [
        "bitmatch",
        "codec",
        "encode",
        IMAGE_NAME,
        "reencoded.bmc",
        "--codec",
        PACKAGE_NAME,
        "--runtime",
        encode_runtime,
        "--json",
    ]
    return {"decode": shlex.join(decode), "encode": shlex.join(encode)}


def bundle_name(cell: dict[str, Any]) -> str:
    return f"bitmatch-job{cell['job']}-cell{cell['id']}"


def build_bundle(cell: dict[str, Any], store: BlobStore) -> bytes:
    """A zip holding the package archive, the bitstream, the source image, both reconstructions (when
    returned), both fingerprints, the cell record and a README with the replay lines."""
    root = bundle_name(cell)
    commands = replay_commands(cell)
    encode, decode = cell.get("encode") or {}, cell.get("decode") or {}
    blobs = {
        PACKAGE_NAME: cell.get("codec_archive"),
        BITSTREAM_NAME: cell.get("bitstream"),
        IMAGE_NAME: cell.get("image_png"),
        "encoder-recon.png": encode.get("recon"),
        "decoder-recon.png": decode.get("recon"),
    }
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
        archive.writestr(f"{root}/cell.json", _json(cell))
        archive.writestr(f"{root}/replay.sh", _replay_script(commands))
        archive.writestr(f"{root}/README.txt", _readme(cell, commands, missing))
    return buffer.getvalue()


def _blob(store: BlobStore, digest: str | None) -> bytes | None:
    try:
        return store.get(digest) if digest else None
    except (BlobNotFound, ValueError):
        return None


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str) + "\n"


def _replay_script(commands: dict[str, str]) -> str:
    return (
        "#!/bin/sh\n# Replays the decoder side of this cell, then the encoder side.\nset -e\n"
        f'cd "$(dirname "$0")"\n{commands["decode"]}\n{commands["encode"]}\n'
    )


def _readme(cell: dict[str, Any], commands: dict[str, str], missing: list[str]) -> str:
    lines = [
        f"bitmatch repro bundle: job {cell['job']}, cell {cell['id']}",
        f"codec {cell['codec_name']} ({cell['codec']}), image {cell['image_name']}",
        f"encoder {cell['encoder']} -> decoder {cell['decoder']}: {cell['verdict']}",
        "",
        "Replay the decoder side (compare stage_hashes in the JSON output with cell.json):",
        f"  {commands['decode']}",
        "Replay the encoder side:",
        f"  {commands['encode']}",
    ]
    if missing:
        lines += ["", f"Not available on the coordinator, left empty: {', '.join(missing)}"]
    return "\n".join(lines) + "\n"
