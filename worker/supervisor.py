"""The HTTP front's side of the compute process: start it, talk to it one request at a time, restart it.

Requests are serialised through an asyncio lock. At most `queue_size` requests may be waiting or running at
once; one more is refused at once (`QueueFull`). A request that runs longer than `timeout_s` kills the compute
process (`ComputeTimeout`); one whose process dies or garbles the stream gets `ComputeDied`. Either way the
process is started again, in the background, and the worker keeps serving.
"""

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from worker.protocol import ProtocolError, read_frame_async, unpack_blobs, write_frame_async

log = logging.getLogger("bitmatch.worker")
STDERR_TAIL_LINES = 30
STREAM_LIMIT = 2**20


@dataclass(frozen=True)
class ComputeLaunch:
    """How to start a target's compute process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # the complete environment of the process
    cwd: str | None = None
    memory_limit_bytes: int | None = None  # RLIMIT_AS of the process (qemu's own included), None: no limit


class ComputeError(Exception):
    code = "compute-error"


class QueueFull(ComputeError):
    code = "queue-full"


class ComputeTimeout(ComputeError):
    code = "timeout"


class ComputeDied(ComputeError):
    code = "compute-died"


class ComputeUnavailable(ComputeError):
    """The compute process could not be started (or did not say hello in time)."""

    code = "compute-unavailable"


@dataclass
class Reply:
    header: dict[str, Any]
    blobs: dict[str, bytes]


class ComputeSupervisor:
    def __init__(
        self, launch: ComputeLaunch, timeout_s: float, queue_size: int, startup_timeout_s: float
    ) -> None:
        self.launch = launch
        self.timeout_s = timeout_s
        self.queue_size = queue_size
        self.startup_timeout_s = startup_timeout_s
        self.fingerprint: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None
        self.pending = 0
        self.starts = 0
        self.timeouts = 0
        self.deaths = 0
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._restart_task: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._alive() else None

    @property
    def full(self) -> bool:
        return self.pending >= self.queue_size

    def status(self) -> dict[str, Any]:
        return {
            "compute_pid": self.pid,
            "compute_running": self._alive(),
            "pending": self.pending,
            "queue": self.queue_size,
            "timeout_s": self.timeout_s,
            "starts": self.starts,
            "timeouts": self.timeouts,
            "deaths": self.deaths,
        }

    async def start(self) -> None:
        async with self._lock:
            await self._ensure_running()

    async def stop(self) -> None:
        if self._restart_task is not None:
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
        async with self._lock:
            await self._kill(graceful=True)

    async def call(self, header: dict[str, Any], payload: bytes = b"") -> Reply:
        """One request/response round trip. The reply may be an error response (`ok` false) from the codec."""
        if self.full:
            raise QueueFull(f"{self.pending} requests already queued (limit {self.queue_size})")
        self.pending += 1
        try:
            async with self._lock:
                await self._ensure_running()
                return await self._round_trip(header, payload)
        finally:
            self.pending -= 1

    async def _round_trip(self, header: dict[str, Any], payload: bytes) -> Reply:
        request_id = next(self._ids)
        try:
            async with asyncio.timeout(self.timeout_s):
                await write_frame_async(self._process.stdin, {**header, "id": request_id}, payload)
                reply, data = await read_frame_async(self._process.stdout)
            if reply.get("id") != request_id:
                raise ProtocolError(f"reply id {reply.get('id')!r} does not match request id {request_id}")
            return Reply(reply, unpack_blobs(reply.get("blobs") or {}, data))
        except TimeoutError:
            self.timeouts += 1
            await self._kill()
            self._schedule_restart()
            raise ComputeTimeout(
                f"the compute process took longer than {self.timeout_s:g} s; "
                "it was killed and is being restarted"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError) as exc:
            self.deaths += 1
            code = await self._kill()
            self._schedule_restart()
            raise ComputeDied(
                f"the compute process failed ({type(exc).__name__}: {exc}; exit code {code}); "
                f"stderr tail: {self.stderr_tail()}"
            ) from None
        except BaseException:
            # Cancelled mid-frame: the stream is out of step, so the process cannot be reused.
            await self._kill()
            raise

    def recycle(self) -> None:
        """Kill the process (between requests) and start a fresh one in the background."""

        async def kill_then_start() -> None:
            async with self._lock:
                await self._kill()
            await self._restart_in_background()

        self._restart_task = asyncio.create_task(kill_then_start())

    def stderr_tail(self, lines: int = 5) -> str:
        return " | ".join(list(self._stderr_tail)[-lines:])

    def _alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _schedule_restart(self) -> None:
        if self._restart_task is None or self._restart_task.done():
            self._restart_task = asyncio.create_task(self._restart_in_background())

    async def _restart_in_background(self) -> None:
        try:
            await self.start()
        except ComputeUnavailable as exc:
            log.error("compute process restart failed: %s", exc)

    async def _ensure_running(self) -> None:
        if self._alive():
            return
        await self._kill()
        self.starts += 1
        self._stderr_tail.clear()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.launch.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.launch.env or None,
                cwd=self.launch.cwd,
                limit=STREAM_LIMIT,
                **_process_group_options(self.launch.memory_limit_bytes),
            )
        except OSError as exc:
            raise ComputeUnavailable(f"cannot start {self.launch.argv[0]}: {exc}") from None
        self._stderr_task = asyncio.create_task(self._pump_stderr(self._process.stderr))
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                hello, _ = await read_frame_async(self._process.stdout)
        except (TimeoutError, asyncio.IncompleteReadError, ProtocolError) as exc:
            code = await self._kill()
            raise ComputeUnavailable(
                f"the compute process did not start ({type(exc).__name__}, exit code "
                f"{code}); stderr tail: {self.stderr_tail()}"
            ) from None
        if hello.get("op") != "hello" or not isinstance(hello.get("fingerprint"), dict):
            await self._kill()
            raise ComputeUnavailable(f"the compute process opened with {hello!r} instead of a hello")
        if hello.get("codec_import_error"):
            await self._kill()
            problem = hello["codec_import_error"]
            raise ComputeUnavailable(f"the compute process cannot import the codec: {problem}")
        self.hello = hello
        self.fingerprint = hello["fingerprint"]
        log.info(
            "compute process %s started: %s on %s",
            self._process.pid,
            self.fingerprint.get("target"),
            self.fingerprint.get("arch"),
        )

    async def _pump_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr_tail.append(text)
            print(f"[compute] {text}", file=sys.stderr, flush=True)

    async def _kill(self, graceful: bool = False) -> int | None:
        """Stop the process (closing stdin first when graceful) and return its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.returncode is None:
            if graceful and process.stdin is not None:
                process.stdin.close()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await process.wait()
            if process.returncode is None:
                _kill_tree(process)
        code = await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2):
                    await self._stderr_task
        return code


POSIX = os.name == "posix"


def _process_group_options(memory_limit_bytes: int | None) -> dict[str, Any]:
    """Start the compute process in a session of its own (POSIX) under its address-space limit. On Windows
    there are neither sessions nor rlimits: it starts as a plain child, without a memory limit."""
    if not POSIX:
        return {}
    options: dict[str, Any] = {"start_new_session": True}
    if memory_limit_bytes:

        def limit() -> None:
            import resource

            with contextlib.suppress(ValueError, OSError):  # macOS refuses some RLIMIT_AS values
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))

        options["preexec_fn"] = limit
    return options


def _kill_tree(process: asyncio.subprocess.Process) -> None:
    """The whole session on POSIX (a wrapper, env, a shell or qemu, may have children of its own); the
    process itself elsewhere."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if POSIX:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
