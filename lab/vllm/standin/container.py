"""What the container sees: its environment, GPU device nodes, the KFD topology, the Hugging Face cache, the kernel
caches."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_flag(name: str, default: str = "0") -> bool:
    """vLLM's boolean environment parsing (envs.py): "1" or "true", any case."""
    return os.environ.get(name, default).strip().lower() in ("1", "true")


GFX_BY_TARGET_VERSION = {90402: "gfx942", 90500: "gfx950", 90010: "gfx90a"}


@dataclass
class Gpus:
    count: int
    arch: str
    memory_gib: float


def discover_gpus() -> Gpus:
    """What amdsmi/torch would count: /dev/kfd plus one /dev/dri/renderD* per GPU (SIM_DEV_ROOT), narrowed by
    HIP/ROCR/CUDA_VISIBLE_DEVICES. Architecture and memory come from the KFD topology under SIM_SYSFS_ROOT when it
    is there (a real host, or the simulated node's bind-mounted /sys/class/kfd), else SIM_GPU_ARCH and
    SIM_GPU_MEMORY_GIB."""
    dev_root = os.environ.get("SIM_DEV_ROOT", "/dev")
    renders = glob.glob(os.path.join(dev_root, "dri", "renderD*"))
    count = len(renders) if os.path.exists(os.path.join(dev_root, "kfd")) else 0
    for variable in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        visible = os.environ.get(variable)
        if visible is not None:
            count = min(count, len([item for item in visible.split(",") if item.strip()]))
    arch = os.environ.get("SIM_GPU_ARCH", "gfx942")
    memory = env_float("SIM_GPU_MEMORY_GIB", 192.0)
    topology = os.path.join(os.environ.get("SIM_SYSFS_ROOT", "/sys"), "class", "kfd", "kfd", "topology", "nodes")
    for node in sorted(glob.glob(os.path.join(topology, "*")), key=lambda path: int(os.path.basename(path))):
        properties = read_properties(os.path.join(node, "properties"))
        if properties.get("simd_count", 0) > 0:
            arch = GFX_BY_TARGET_VERSION.get(properties.get("gfx_target_version", 0), arch)
            bank = read_properties(os.path.join(node, "mem_banks", "0", "properties"))
            if bank.get("size_in_bytes"):
                memory = bank["size_in_bytes"] / 2**30
            break
    return Gpus(count=count, arch=arch, memory_gib=memory)


def read_properties(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="ascii") as handle:
            pairs = (line.split() for line in handle)
            return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].lstrip("-").isdigit()}
    except OSError:
        return {}


def hf_hub_cache() -> str:
    """huggingface_hub/constants.py: HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


class ConfigNotCached(Exception):
    """transformers' OSError when config.json is neither cached nor downloadable (utils/hub.py cached_files)."""


def resolve_snapshot(model: str, revision: str | None) -> str:
    """The directory vLLM loads from: a local path, or the cached snapshot of `revision` (a commit, or a branch
    or tag resolved through refs/), as huggingface_hub does with HF_HUB_OFFLINE=1. The stand-in never downloads:
    a file missing from the cache fails as it does offline (or with the hub unreachable)."""
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise ConfigNotCached()
        return model
    repo = os.path.join(hf_hub_cache(), "models--" + model.replace("/", "--"))
    revision = revision or "main"
    commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else None
    if commit is None:
        try:
            with open(os.path.join(repo, "refs", revision), encoding="ascii") as handle:
                commit = handle.read().strip()
        except OSError:
            raise ConfigNotCached() from None
    snapshot = os.path.join(repo, "snapshots", commit)
    if not os.path.isfile(os.path.join(snapshot, "config.json")):
        raise ConfigNotCached()
    return snapshot


class ShardError(Exception):
    """What safetensors raises when it opens a shard (safetensors_rust.SafetensorError, or the OSError)."""

    def __init__(self, exception_line: str) -> None:
        super().__init__(exception_line)
        self.exception_line = exception_line


MAX_SAFETENSORS_HEADER = 100_000_000


def check_safetensors(path: str) -> None:
    """Read a shard's header as safetensors' read_metadata does and raise its error for a damaged file: too
    short, a header length past the end, bad JSON, or tensors that do not cover the file exactly (truncated)."""
    def fail(reason: str) -> ShardError:
        return ShardError(f"safetensors_rust.SafetensorError: Error while deserializing header: {reason}")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise fail("header too small")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_SAFETENSORS_HEADER:
                raise fail("header too large")
            if 8 + length > size:
                raise fail("invalid header length")
            raw = handle.read(length)
    except FileNotFoundError:
        raise ShardError("FileNotFoundError: No such file or directory (os error 2)") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise fail(f"invalid UTF-8 in header: {error.reason}") from None
    except json.JSONDecodeError as error:
        raise fail(f"invalid JSON in header: {error.msg.lower()} at line {error.lineno} column {error.colno}") \
            from None
    if not isinstance(header, dict):
        raise fail("invalid JSON in header: invalid type: expected a map at line 1 column 1")
    try:
        ends = [int(info["data_offsets"][1]) for name, info in header.items() if name != "__metadata__"]
    except (KeyError, IndexError, TypeError, ValueError):
        raise fail("invalid shape, data type, or offset for tensor") from None
    if max(ends, default=0) + 8 + length != size:
        raise fail("incomplete metadata, file not fully covered")


@dataclass
class Weights:
    """The checkpoint as vLLM's DefaultModelLoader finds it: *.safetensors in the snapshot, filtered by the index
    when there is one (model_loader/default_loader.py _prepare_weights)."""
    files: list[str]
    expected: int
    index_found: bool


def find_weights(snapshot: str) -> Weights:
    files = sorted(glob.glob(os.path.join(snapshot, "*.safetensors")))
    expected = len(files)
    index_path = os.path.join(snapshot, "model.safetensors.index.json")
    index_found = os.path.isfile(index_path)
    if index_found:
        try:
            with open(index_path, encoding="utf-8") as handle:
                wanted = set(json.load(handle).get("weight_map", {}).values())
        except (OSError, ValueError):
            wanted = set()
        if wanted:
            files = [path for path in files if os.path.basename(path) in wanted]
            expected = len(wanted)
    return Weights(files=files, expected=expected, index_found=index_found)


def cache_key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


@dataclass
class KernelCache:
    """A cache directory a cold start fills and a warm start reuses; `marker` is the file the stand-in writes
    where the real cache keeps its artefacts."""
    directory: str
    marker: str

    @property
    def warm(self) -> bool:
        return os.path.isfile(os.path.join(self.directory, self.marker))

    def fill(self, content: dict) -> str | None:
        try:
            path = os.path.join(self.directory, self.marker)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(content, handle)
            return None
        except OSError as error:
            return str(error)


def triton_cache_dir() -> str:
    """Triton's kernel cache: TRITON_CACHE_DIR, else $TRITON_HOME/.triton/cache (TRITON_HOME: the home directory).
    AITER's FP8 BMM kernels are Triton kernels, compiled into it by the pre-compile step
    (model_executor/layers/attention/mla_attention.py)."""
    home = os.environ.get("TRITON_HOME") or os.path.expanduser("~")
    return os.environ.get("TRITON_CACHE_DIR") or os.path.join(home, ".triton", "cache")


def vllm_cache_root() -> str:
    """envs.py VLLM_CACHE_ROOT (default ~/.cache/vllm); torch.compile artefacts go to torch_compile_cache/."""
    return os.path.expanduser(os.environ.get("VLLM_CACHE_ROOT", "~/.cache/vllm"))
