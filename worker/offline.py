"""Offline result sets: run encodes or decodes on this runner's target and write them to a directory that
describes itself, with no coordinator and no network. CI runners that cannot reach one another exchange
these directories as artifacts; `bitmatch aggregate` (server/offline.py) turns them into cells.

    bitmatch encode-set --codec PKG... --images SET|DIR --target T --out DIR
    bitmatch decode-set --from DIR... --target T --out DIR [--decode-with DIGEST=PKG]

The set directory's format, and reading one back, are the contract's (worker/contract/offline_set.py).

Each task runs on the target's own compute process (natively, or under qemu), the one the HTTP front uses,
so a result here is what that device would have answered a coordinator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codec.images import decode_png, encode_png
from codec.imagesets import make_set, set_names
from codec.package import CodecPackage, archive_bytes
from codec.progress import SILENT, Progress
from worker.contract import TaskError, TaskReport
from worker.contract.offline_set import FORMAT, SET_FILE, VERSION, SetError, iter_reports, load_set
from worker.execute import ApiError, CodecStore, call, decode_header, encode_header, result_body
from worker.supervisor import ComputeLaunch, ComputeSupervisor


@dataclass(frozen=True)
class Inputs:
    packages: list[CodecPackage]
    images: dict[str, tuple[str, bytes]]  # digest -> (name, PNG)
    image_set: str | None


def resolve_images(spec: str) -> tuple[dict[str, tuple[str, bytes]], str | None]:
    """A bundled set's name or a directory of PNGs -> {digest: (name, PNG bytes)}, and the set's name."""
    import hashlib

    if spec in set_names():
        pngs = [(name, encode_png(pixels)) for name, pixels in make_set(spec).items()]
        set_name = spec
    else:
        directory = Path(spec)
        if not directory.is_dir():
            raise SetError(
                f"{spec!r} is neither a bundled image set ({', '.join(set_names())}) nor a directory"
            )
        pngs = [(path.stem, path.read_bytes()) for path in sorted(directory.glob("*.png"))]
        if not pngs:
            raise SetError(f"no PNG images in {directory}")
        set_name = None
    return {hashlib.sha256(png).hexdigest(): (name, png) for name, png in pngs}, set_name


def task_name(kind: str, codec: str, image: str, repeat: int, encoder_target: str | None = None) -> str:
    prefix = f"{kind}-{encoder_target}-" if encoder_target else f"{kind}-"
    return f"{prefix}{codec[:12]}-{image[:12]}-r{repeat}"


class Runner:
    """The target's compute process and a codec cache, for one set's tasks."""

    def __init__(
        self, target: str, launch: ComputeLaunch, cache_dir: Path, timeout_s: float, label: str | None = None
    ) -> None:
        self.target = target
        self.label = label or target  # the set's name for this device in the matrix (e.g. cpu@macos-14)
        self.supervisor = ComputeSupervisor(launch, timeout_s, 1, startup_timeout_s=900.0)
        self.store = CodecStore(cache_dir / "codecs")

    async def __aenter__(self) -> Runner:
        await self.supervisor.start()
        if self.supervisor.fingerprint is None:
            raise SetError(f"the {self.target} compute process did not start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.supervisor.stop()

    @property
    def fingerprint(self) -> dict[str, Any]:
        return dict(self.supervisor.fingerprint or {})

    def ensure(self, package: CodecPackage, archive: bytes) -> None:
        if not self.store.has(package.digest):
            self.store.put(package.digest, archive)

    async def encode(self, digest: str, png: bytes) -> TaskReport:
        started = time.perf_counter()
        try:
            image = decode_png(png)
            header = encode_header(self.store, digest, image, True, True)
            reply = await call(self.supervisor, header, image.tobytes())
            result = await result_body(self.target, digest, reply, started, self.supervisor.fingerprint)
            return TaskReport(kind="encode", result=result)
        except ApiError as exc:
            return TaskReport(
                kind="encode", error=TaskError(status=exc.status, error=exc.code, detail=exc.detail)
            )

    async def decode(self, digest: str, bitstream: bytes, allow_foreign: bool) -> TaskReport:
        started = time.perf_counter()
        try:
            header = decode_header(self.store, digest, True, True, allow_foreign)
            reply = await call(self.supervisor, header, bitstream)
            result = await result_body(self.target, digest, reply, started, self.supervisor.fingerprint)
            return TaskReport(kind="decode", result=result)
        except ApiError as exc:
            return TaskReport(
                kind="decode", error=TaskError(status=exc.status, error=exc.code, detail=exc.detail)
            )


# --- writing ------------------------------------------------------------------------------------------


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise SetError(f"{out} exists and is not empty; give a new directory")
    for sub in ("results", "codecs", "images", "bitstreams"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def _write_report(out: Path, name: str, report: TaskReport) -> str:
    path = Path("results") / f"{name}.json"
    (out / path).write_text(report.model_dump_json(exclude_none=True))
    return path.as_posix()


def _manifest(kind: str, runner: Runner, **fields: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "id": uuid.uuid4().hex,
        "target": runner.label,  # the matrix axis: the target, or the label a runner gave it
        "runs_on": runner.target,
        "fingerprint": runner.fingerprint,
        "created_at": datetime.now(UTC).isoformat(),
        **fields,
    }


async def encode_set(
    inputs: Inputs, runner: Runner, out: Path, repeat: int = 1, progress: Progress = SILENT
) -> dict[str, Any]:
    """Encode every (codec, image) `repeat` times on the runner's target into the set directory `out`; one
    progress step per encode, a note for each one that failed."""
    _prepare(out)
    progress.add_total(len(inputs.packages) * len(inputs.images) * repeat)
    codecs = {}
    for package in inputs.packages:
        archive = archive_bytes(package)
        runner.ensure(package, archive)
        (out / "codecs" / f"{package.digest}.tar").write_bytes(archive)
        codecs[package.digest] = {
            "name": package.manifest.get("name"),
            "precision": package.precision,
            "archive": f"codecs/{package.digest}.tar",
        }
    images = {}
    for digest, (name, png) in inputs.images.items():
        (out / "images" / f"{digest}.png").write_bytes(png)
        images[digest] = {"name": name, "file": f"images/{digest}.png"}
    tasks = []
    for package in inputs.packages:
        for digest, (name, png) in inputs.images.items():
            for r in range(repeat):
                report = await runner.encode(package.digest, png)
                task = task_name("encode", package.digest, digest, r)
                if report.result is not None:
                    data = base64.b64decode(report.result.bitstream)
                    (out / "bitstreams" / f"{report.result.bitstream_sha256}.bmc").write_bytes(data)
                tasks.append(
                    {
                        "name": task,
                        "codec": package.digest,
                        "image": digest,
                        "repeat": r,
                        "report": _write_report(out, task, report),
                    }
                )
                _report_outcome(progress, f"encode {name} with {package.digest[:12]} r{r}", report)
    manifest = _manifest(
        "encode",
        runner,
        codecs=codecs,
        images=images,
        image_set=inputs.image_set,
        repeat=repeat,
        tasks=tasks,
    )
    (out / SET_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


async def decode_set(
    sources: list[Path],
    runner: Runner,
    out: Path,
    repeat: int = 1,
    decode_with: dict[str, CodecPackage] | None = None,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Decode every first encode of every encode set in `sources` on the runner's target, `repeat` times;
    `decode_with` maps an encoder package digest to the package that decodes its bitstreams instead. One
    progress step per decode, a note for each one that failed."""
    decode_with = decode_with or {}
    encode_sets = [load_set(path, expect="encode") for path in sources]
    _prepare(out)
    decoders = {}
    for other in decode_with.values():  # the aggregate needs these packages too: the set carries them
        archive = archive_bytes(other)
        runner.ensure(other, archive)
        (out / "codecs" / f"{other.digest}.tar").write_bytes(archive)
        decoders[other.digest] = {
            "name": other.manifest.get("name"),
            "precision": other.precision,
            "archive": f"codecs/{other.digest}.tar",
        }
    tasks, origins = [], []
    for source, encoded in zip(sources, encode_sets, strict=True):
        origins.append({"id": encoded["id"], "target": encoded["target"], "path": str(source)})
        for codec in encoded["codecs"].values():
            package = CodecPackage.load(source / codec["archive"])
            runner.ensure(package, archive_bytes(package))
        progress.add_total(repeat * sum(entry["repeat"] == 0 for entry in encoded.get("tasks", [])))
        for entry, report in iter_reports(source, encoded):
            if entry["repeat"] != 0:
                continue  # decodes are of the first encode that produced a bitstream, as in a job
            if report.result is None:
                progress.advance(repeat)  # that encode failed: nothing to decode
                continue
            bitstream = base64.b64decode(report.result.bitstream)
            decoder = decode_with.get(entry["codec"])
            decoder_digest = decoder.digest if decoder else entry["codec"]
            for r in range(repeat):
                answer = await runner.decode(decoder_digest, bitstream, decoder is not None)
                task = task_name("decode", decoder_digest, entry["image"], r, encoded["target"])
                tasks.append(
                    {
                        "name": task,
                        "encode_set": encoded["id"],
                        "encoder_target": encoded["target"],
                        "codec": entry["codec"],
                        "decoder_codec": decoder_digest,
                        "image": entry["image"],
                        "repeat": r,
                        "report": _write_report(out, task, answer),
                    }
                )
                _report_outcome(progress, f"decode {encoded['target']} {entry['image'][:12]} r{r}", answer)
    manifest = _manifest(
        "decode",
        runner,
        repeat=repeat,
        sources=origins,
        tasks=tasks,
        codecs=decoders,
    )
    (out / SET_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for path in ("images", "bitstreams", *(() if decoders else ("codecs",))):
        shutil.rmtree(out / path, ignore_errors=True)  # a decode set refers to its encode sets for those
    return manifest


def _report_outcome(progress: Progress, task: str, report: TaskReport) -> None:
    """One more step; a task that did not end ok is a note (it is a result on record, never hidden)."""
    progress.advance()
    outcome = _outcome(report)
    if outcome != "ok":
        progress.note(f"{task}: {outcome}")


def _outcome(report: TaskReport) -> str:
    if report.error is not None:
        return f"{report.error.error} ({report.error.status})"
    result = report.result
    if getattr(result, "partial", False):
        return f"refused: {result.decode_error.error}"
    return "ok"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
