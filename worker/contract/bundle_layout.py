"""The names inside a repro bundle, one folder `bitmatch-job<J>-cell<C>/`: the coordinator writes it
(server/dashboard/repro.py), `bitmatch replay` reads it (worker/bundle.py, which describes each file)."""

from typing import Any

CELL_FILE = "cell.json"
PACKAGE_NAME, DECODER_PACKAGE_NAME = "codec.tar", "decoder-codec.tar"
BITSTREAM_NAME, IMAGE_NAME = "bits.bmc", "image.png"
RECON_NAMES = {"encoder": "encoder-recon.png", "decoder": "decoder-recon.png"}
PAYLOAD_NAMES = (PACKAGE_NAME, DECODER_PACKAGE_NAME, BITSTREAM_NAME, IMAGE_NAME, *RECON_NAMES.values())


def bundle_name(cell: dict[str, Any]) -> str:
    return f"bitmatch-job{cell['job']}-cell{cell['id']}"
