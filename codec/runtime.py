"""ONNX runtimes selected by name.

    ort-cpu       ONNX Runtime, CPU provider, default threads and graph optimisations
    ort-cpu-1t    ONNX Runtime, CPU provider, one intra/inter-op thread, graph optimisations off
    onnx-ref      onnx.reference.ReferenceEvaluator (pure Python/numpy), its Conv and ConvTranspose vectorised
                  (codec/onnxref.py: the same arithmetic in the same order, bit for bit)
    onnx-ref-naive  the evaluator exactly as onnx ships it (the specification's literal loops)
    ort-cuda      CUDA provider, use_tf32=0, cudnn_conv_algo_search=DEFAULT, no CPU fallback
    ort-openvino  OpenVINO provider (when the onnxruntime build has it)

Every ORT session's idle threads sleep rather than spin (NO_SPINNING): a scheduling choice, never an
arithmetic one. onnx and onnxruntime are imported when a runtime is used, so importing this module is cheap.
Which runtimes a machine can run is its device targets' check (worker/targets/, one module per target); a
session refuses a provider its onnxruntime lacks rather than fall back to another.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from codec.errors import CodecError

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
RUNTIME_NAMES = ("ort-cpu", "ort-cpu-1t", "onnx-ref", "onnx-ref-naive", "ort-cuda", "ort-openvino")
REFERENCE_RUNTIMES = ("onnx-ref", "onnx-ref-naive")

NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


@dataclass(frozen=True)
class OrtConfiguration:
    providers: list[Any]
    session_entries: dict[str, str]
    single_thread: bool = False
    optimize: bool = True


def ort_configuration(runtime: str) -> OrtConfiguration:
    """Providers, provider options and session settings of an ORT runtime name."""
    no_fallback = {"session.disable_cpu_ep_fallback": "1"}
    if runtime == "ort-cpu":
        return OrtConfiguration(["CPUExecutionProvider"], {})
    if runtime == "ort-cpu-1t":
        return OrtConfiguration(["CPUExecutionProvider"], {}, single_thread=True, optimize=False)
    if runtime == "ort-cuda":
        cuda_options = {"use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"}
        return OrtConfiguration([("CUDAExecutionProvider", cuda_options)], no_fallback)
    if runtime == "ort-openvino":
        return OrtConfiguration(["OpenVINOExecutionProvider"], no_fallback)
    raise RuntimeUnavailable(f"{runtime!r} is not an ONNX Runtime runtime")


class RuntimeUnavailable(CodecError):
    """The requested runtime is unknown or cannot run on this machine."""

    code = "runtime-unavailable"


@dataclass(frozen=True)
class Runtime:
    name: str

    def session(self, model: bytes, retain_memory: bool = False) -> Session:
        """A session for a serialized ModelProto. `retain_memory`: keep the working memory between runs
        (faster, for inputs of bounded size; see OrtSession). The arithmetic is the same either way."""
        if self.name in REFERENCE_RUNTIMES:
            return ReferenceSession(model, naive=self.name == "onnx-ref-naive")
        return OrtSession(model, self.name, retain_memory)


def get_runtime(name: str) -> Runtime:
    """The runtime of a known name. Whether it can run on this machine is its device target's check
    (worker/targets/); a session whose provider this onnxruntime lacks is refused when it is made."""
    if name not in RUNTIME_NAMES:
        raise RuntimeUnavailable(f"unknown runtime {name!r}; known: {', '.join(RUNTIME_NAMES)}")
    return Runtime(name)


class Session:
    runtime: str

    def run(self, feeds: Feeds) -> Outputs:
        raise NotImplementedError

    def run_with_providers(self, feeds: Feeds) -> tuple[Outputs, dict[str, str]]:
        """Run once and report, per executed node name, the execution provider that ran it."""
        raise NotImplementedError


class ReferenceSession(Session):
    def __init__(self, model: bytes, naive: bool = False) -> None:
        self.runtime = "onnx-ref-naive" if naive else "onnx-ref"
        try:
            import onnx
            from onnx.reference import ReferenceEvaluator

            from codec.onnxref import Conv, ConvTranspose
        except ImportError as exc:
            raise RuntimeUnavailable(f"runtime {self.runtime} unavailable: {exc}") from exc
        self._proto = onnx.load_from_string(model)
        self._evaluator = ReferenceEvaluator(self._proto, new_ops=None if naive else [Conv, ConvTranspose])
        self._outputs = [output.name for output in self._proto.graph.output]

    def run(self, feeds: Feeds) -> Outputs:
        values = self._evaluator.run(None, feeds)
        return dict(zip(self._outputs, (np.asarray(v) for v in values), strict=True))

    def run_with_providers(self, feeds: Feeds) -> tuple[Outputs, dict[str, str]]:
        return self.run(feeds), {node.name: self.runtime for node in self._proto.graph.node}


class OrtSession(Session):
    def __init__(self, model: bytes, runtime: str, retain_memory: bool = False) -> None:
        self.runtime = runtime
        self.retain_memory = retain_memory
        self._model = model
        self._session = self._make(profile_dir=None)
        self._outputs = [output.name for output in self._session.get_outputs()]

    @property
    def session_options(self) -> Any:
        return self._session.get_session_options()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _make(self, profile_dir: str | None) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(f"runtime {self.runtime} unavailable: {exc}") from exc
        config = ort_configuration(self.runtime)
        provider = _provider_name(config.providers[0])
        if provider not in ort.get_available_providers():  # ORT would warn and fall back to another
            raise RuntimeUnavailable(
                f"runtime {self.runtime} unavailable: this onnxruntime has no {provider}"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ORT's CPU memory arena keeps a session's pages between runs: without it every run faults in fresh
        # zeroed memory, which made a 768x512 round trip 1.7x slower. But the arena grows in powers of two and
        # keeps its peak (an 8 MiP image: 5.6 GB with it, 2.4 GB without), so only sessions whose inputs are
        # bounded ask for it (codec.Codec: images up to RETAIN_MEMORY_PIXELS). The arithmetic is unchanged.
        options.enable_cpu_mem_arena = self.retain_memory
        options.enable_mem_pattern = False
        if config.single_thread:
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not config.optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Idle pool threads sleep instead of spinning: workers of several targets share a machine's cores,
        # and a spinning ort-cpu burnt 2.6x the CPU of ort-cpu-1t for the same work in the demo.
        for key, value in {**NO_SPINNING, **config.session_entries}.items():
            options.add_session_config_entry(key, value)
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(profile_dir, "bitmatch")
        try:
            return ort.InferenceSession(self._model, options, providers=config.providers)
        except Exception as exc:  # ORT raises bare RuntimeError/Fail subclasses
            raise RuntimeUnavailable(f"{self.runtime}: cannot create a session: {exc}") from exc

    def run(self, feeds: Feeds) -> Outputs:
        values = self._session.run(self._outputs, feeds)
        return dict(zip(self._outputs, values, strict=True))

    def run_with_providers(self, feeds: Feeds) -> tuple[Outputs, dict[str, str]]:
        with tempfile.TemporaryDirectory(prefix="bitmatch-prof-") as tmp:
            session = self._make(profile_dir=tmp)
            values = session.run(self._outputs, feeds)
            profile_path = session.end_profiling()
            with open(profile_path, encoding="utf-8") as handle:
                events = json.load(handle)
        return dict(zip(self._outputs, values, strict=True)), providers_from_profile(events)


def _provider_name(provider: Any) -> str:
    """The name of an ORT providers-list entry (a name, or a (name, options) pair)."""
    return provider if isinstance(provider, str) else provider[0]


def providers_from_profile(events: list[dict[str, Any]]) -> dict[str, str]:
    """Node name -> execution provider, from ORT profiling events (category "Node")."""
    providers: dict[str, str] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "provider" in args:
            name = event.get("name", "")
            for suffix in ("_kernel_time", "_fence_before", "_fence_after"):
                name = name.removesuffix(suffix)
            providers[name] = args["provider"]
    return providers
