"""The 163 safetensors shards: tensor names, headers, sizes in the small and the real size profile, bytes
computed on demand by offset, and their sha256."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import struct
from dataclasses import dataclass

SHARD_COUNT = 163
DEFAULT_SHARD_BYTES = 64 * 1024
MIN_SHARD_BYTES = 16 * 1024
# The stand-in keeps 8 routed experts per MoE layer (the real model has 256) so shard headers stay small
# enough for kilobyte-sized test shards; tensor names otherwise follow the real checkpoint's naming.
STANDIN_EXPERTS_PER_LAYER = 8
# Real-size profile: shards of 4.19-4.27 GB, about 689 GB (642 GiB) in all, like the real repository.
REAL_SHARD_SIZE_RANGE = (4_190_000_000, 4_270_000_000)
DATA_BLOCK_BYTES = 256 * 1024


def shard_name(index: int) -> str:
    """Shard file name as in the real repository: 5-digit index, 6-digit total."""
    return f"model-{index:05d}-of-{SHARD_COUNT:06d}.safetensors"


@functools.lru_cache(maxsize=64)
def _data_block(key: str, index: int) -> bytes:
    return random.Random(f"{key}:{index}").randbytes(DATA_BLOCK_BYTES)


@dataclass(frozen=True)
class ShardBody:
    """Bytes of one safetensors shard: a fixed header followed by pseudo-random tensor data."""

    key: str
    header: bytes
    data_size: int

    @property
    def size(self) -> int:
        return len(self.header) + self.data_size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        parts = []
        if offset < len(self.header):
            parts.append(self.header[offset:min(end, len(self.header))])
            offset = len(self.header)
        while offset < end:
            data_offset = offset - len(self.header)
            block, within = divmod(data_offset, DATA_BLOCK_BYTES)
            take = min(DATA_BLOCK_BYTES - within, end - offset)
            parts.append(_data_block(self.key, block)[within:within + take])
            offset += take
        return b"".join(parts)


def _tensor_names() -> list[tuple[str, str]]:
    """(name, dtype) of every tensor, in checkpoint order, with the real checkpoint's naming scheme."""
    names: list[tuple[str, str]] = [("model.embed_tokens.weight", "BF16")]

    def fp8_linear(prefix: str) -> list[tuple[str, str]]:
        return [(f"{prefix}.weight", "F8_E4M3"), (f"{prefix}.weight_scale_inv", "F32")]

    for layer in range(62):  # 61 transformer layers + layer 61, the multi-token-prediction layer
        p = f"model.layers.{layer}"
        names += [(f"{p}.input_layernorm.weight", "BF16"), (f"{p}.post_attention_layernorm.weight", "BF16")]
        for proj in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"):
            names += fp8_linear(f"{p}.self_attn.{proj}")
        names += [(f"{p}.self_attn.q_a_layernorm.weight", "BF16"), (f"{p}.self_attn.kv_a_layernorm.weight", "BF16")]
        names += fp8_linear(f"{p}.self_attn.indexer.wq_b") + fp8_linear(f"{p}.self_attn.indexer.wk")
        names += [
            (f"{p}.self_attn.indexer.k_norm.weight", "BF16"),
            (f"{p}.self_attn.indexer.k_norm.bias", "BF16"),
            (f"{p}.self_attn.indexer.weights_proj.weight", "BF16"),
        ]
        if layer < 3:  # first_k_dense_replace = 3
            for proj in ("gate_proj", "up_proj", "down_proj"):
                names += fp8_linear(f"{p}.mlp.{proj}")
        else:
            names += [(f"{p}.mlp.gate.weight", "BF16"), (f"{p}.mlp.gate.e_score_correction_bias", "F32")]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                names += fp8_linear(f"{p}.mlp.shared_experts.{proj}")
            for expert in range(STANDIN_EXPERTS_PER_LAYER):
                for proj in ("gate_proj", "up_proj", "down_proj"):
                    names += fp8_linear(f"{p}.mlp.experts.{expert}.{proj}")
        if layer == 61:
            names += [
                (f"{p}.embed_tokens.weight", "BF16"),
                (f"{p}.enorm.weight", "BF16"),
                (f"{p}.hnorm.weight", "BF16"),
                (f"{p}.eh_proj.weight", "BF16"),
                (f"{p}.shared_head.norm.weight", "BF16"),
                (f"{p}.shared_head.head.weight", "BF16"),
            ]
    names += [("model.norm.weight", "BF16"), ("lm_head.weight", "BF16")]
    return names


_ITEM_SIZE = {"F8_E4M3": 1, "BF16": 2, "F32": 4}
# Relative share of a shard's data bytes: FP8 weight matrices dominate, scales and norms are small.
_BYTE_WEIGHT = {"F8_E4M3": 16, "BF16": 2, "F32": 1}


def _safetensors_header(tensors: list[tuple[str, str]], data_size: int) -> bytes:
    """Length-prefixed JSON header laying `data_size` bytes out over `tensors` (space-padded to 8 bytes)."""
    total_weight = sum(_BYTE_WEIGHT[dtype] for _, dtype in tensors)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for position, (name, dtype) in enumerate(tensors):
        if position == len(tensors) - 1:
            nbytes = data_size - offset
        else:
            nbytes = data_size * _BYTE_WEIGHT[dtype] // total_weight // 4 * 4
        header[name] = {"dtype": dtype, "shape": [nbytes // _ITEM_SIZE[dtype]],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def build_shards(seed: str, shard_bytes: int, size_profile: str) -> tuple[list[ShardBody], dict[str, str]]:
    """Shard bodies in order and the index's weight map (tensor name -> shard file name)."""
    tensors = _tensor_names()
    rng = random.Random(f"{seed}:shard-sizes:{size_profile}")
    bodies: list[ShardBody] = []
    weight_map: dict[str, str] = {}
    for index in range(1, SHARD_COUNT + 1):
        start = (index - 1) * len(tensors) // SHARD_COUNT
        stop = index * len(tensors) // SHARD_COUNT
        group = tensors[start:stop]
        if size_profile == "real":
            target = rng.randint(*REAL_SHARD_SIZE_RANGE)
        else:
            target = int(shard_bytes * rng.uniform(0.9, 1.1))
        # Header length depends on the offsets' digits: size the data with a first header, then rebuild it.
        data_size = (target - len(_safetensors_header(group, target))) // 4 * 4
        header = _safetensors_header(group, data_size)
        bodies.append(ShardBody(key=f"{seed}:{shard_name(index)}", header=header, data_size=data_size))
        for name, _ in group:
            weight_map[name] = shard_name(index)
    return bodies, weight_map


def sha256_of(body: ShardBody) -> str:
    digest = hashlib.sha256()
    for offset in range(0, body.size, 1 << 20):
        digest.update(body.read(offset, 1 << 20))
    return digest.hexdigest()
