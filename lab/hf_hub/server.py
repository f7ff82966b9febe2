"""Hugging Face Hub stand-in serving a deterministic copy of `deepseek-ai/DeepSeek-V3.2`.

The real `huggingface_hub` client (2.4.0) downloads from it when `HF_ENDPOINT` points at it. It answers the
calls the client makes, with the hub's status codes, headers and error codes:

  GET  /api/models/{repo}[/revision/{rev}][?blobs=true]     model info (siblings, sha256 and sizes with blobs)
  GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=   paginated with `Link: <...>; rel="next"`
  POST /api/models/{repo}/paths-info/{rev}                  form or JSON body with `paths`
  GET  /api/models/{repo}/refs                              branches
  GET  /api/models/{repo}/xet-read-token/{rev}              Xet access token (X-Xet-* headers and JSON)
  HEAD|GET /{repo}/resolve/{rev}/{path}                     git files: 200 from the hub (ETag = git oid);
                                                            LFS files: 302 to a CDN listener on a second port,
                                                            with X-Linked-Etag (sha256) and X-Linked-Size;
                                                            with --storage xet, 302 to the Xet bridge listener
                                                            instead, plus X-Xet-Hash and Link rel="xet-auth"
  HEAD|GET {cdn}/repos/../{sha256}?Expires=&Signature=      LFS bytes, Range -> 206, signed URLs like the CDN
  HEAD|GET {bridge}/xet-bridge-us/{repo}/{xet hash}?X-Amz-*  Xet-backed bytes over plain HTTP, Range -> 206
  GET  {bridge}/v1/reconstructions/{xet hash}               Xet CAS: answers 501 (the protocol is not reproduced)

The CDN and the bridge run on their own ports so that, like with the real hub, the client stops at the 302,
takes the file's metadata from it and drops the Authorization header when fetching the bytes. With the default
`--storage lfs` no Xet header or field is sent and the client uses plain HTTP; with `--storage xet` every shard
is Xet-backed as on today's hub, and the client takes the Xet path unless HF_HUB_DISABLE_XET=1 (its HTTP
fallback, which follows the redirect to the bridge).

Content is generated from a seed at start-up: 163 safetensors shards (Git LFS; bytes computed on demand by
offset, sha256 on first use), their index, config, tokenizer, code, card and licence (git files). With
`--size-profile real` the metadata carries the real sizes (~689 GB) and shard downloads answer 501.

The hub's rate limits (429 with Retry-After and the RateLimit headers) apply per bucket (api, resolvers) once
set with --rate-limit or through /_sim/faults.

Test control (not on the real hub), on the hub port: GET /_sim/info, GET|POST|DELETE /_sim/faults (status,
hang, stall, drop, corrupt faults, a global throttle and rate limits), GET|DELETE /_sim/stats, POST /_sim/refs.

Run: `python3 server.py --port 0 ...` prints `READY http://HOST:PORT` once listening. See README.md.
Only the Python standard library is used: the stand-in runs in minimal containers.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import fnmatch
import functools
import hashlib
import hmac
import json
import mimetypes
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

# --------------------------------------------------------------------------------------------------------------
# Repository content

REPO_ID = "deepseek-ai/DeepSeek-V3.2"
SHARD_COUNT = 163
DEFAULT_SEED = "deepseek-v3.2-standin"
DEFAULT_SHARD_BYTES = 64 * 1024
MIN_SHARD_BYTES = 16 * 1024
# The stand-in keeps 8 routed experts per MoE layer (the real model has 256) so shard headers stay small
# enough for kilobyte-sized test shards; tensor names otherwise follow the real checkpoint's naming.
STANDIN_EXPERTS_PER_LAYER = 8
# Real-size profile: shards of 4.19-4.27 GB, about 689 GB (642 GiB) in all, like the real repository.
REAL_SHARD_SIZE_RANGE = (4_190_000_000, 4_270_000_000)
DATA_BLOCK_BYTES = 256 * 1024
# How the hub stores LFS files: Git LFS behind a CDN, or Xet (the hub's default for new uploads).
STORAGES = ("lfs", "xet")
COMMIT_DATES = ("2025-12-01T09:32:41.000Z", "2025-12-08T11:05:19.000Z")
CREATED_AT = "2025-12-01T03:27:45.000Z"


def shard_name(index: int) -> str:
    """Shard file name as in the real repository: 5-digit index, 6-digit total."""
    return f"model-{index:05d}-of-{SHARD_COUNT:06d}.safetensors"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the hub reports as `oid`/`blobId` and as ETag of git files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer text that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


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


class HubFile:
    """One file of one commit, with the metadata the hub reports for it.

    Git files carry `content`. LFS shards carry a `shard` body whose sha256 is computed on first use (so large
    `--shard-bytes` values cost nothing until a shard is asked for), or, in the real-size profile, only a fixed
    stand-in digest and no bytes at all.
    """

    def __init__(self, path: str, size: int, *, content: bytes | None = None, shard: ShardBody | None = None,
                 sha256: str | None = None) -> None:
        self.path, self.size, self.content, self.shard = path, size, content, shard
        self._sha256 = sha256
        self._git_oid = git_blob_oid(content) if content is not None else None

    @property
    def is_lfs(self) -> bool:
        return self.content is None

    @property
    def servable(self) -> bool:
        """False for real-size shards: only their metadata exists."""
        return self.content is not None or self.shard is not None

    @property
    def lfs_sha256(self) -> str | None:
        if self._sha256 is None and self.shard is not None:
            # Deterministic, so two threads racing here compute the same value.
            self._sha256 = _sha256_of(self.shard)
        return self._sha256

    @property
    def git_oid(self) -> str:
        """Blob oid of the file, or of its LFS pointer for LFS files (what the hub reports as oid/blobId)."""
        if self._git_oid is None:
            self._git_oid = git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        return self._git_oid

    @property
    def xet_hash(self) -> str:
        """The file's Xet hash (64 hex). Xet's is a Merkle hash over content-defined chunks, which the stand-in does
        not cut: a hash derived from the sha256 stands in for it."""
        return hashlib.sha256(f"xet-standin:{self.lfs_sha256}".encode()).hexdigest()

    @property
    def pointer_size(self) -> int | None:
        return len(lfs_pointer(self.lfs_sha256, self.size)) if self.is_lfs else None

    def read(self, offset: int, length: int) -> bytes:
        if self.content is not None:
            return self.content[offset:offset + length]
        if self.shard is not None:
            return self.shard.read(offset, length)
        raise ValueError(f"{self.path}: content is not available in this size profile")


@dataclass
class Commit:
    sha: str
    title: str
    date: str
    files: dict[str, HubFile]
    tree_oids: dict[str, str] = field(default_factory=dict)  # sub-directory path -> git tree oid


@dataclass
class Repo:
    repo_id: str
    seed: str
    size_profile: str
    storage: str
    commits: dict[str, Commit]
    branches: dict[str, str]
    pinned_commit: str
    safetensors_parameters: dict[str, int]

    def used_storage(self) -> int:
        """Bytes of all distinct blobs over all commits (the hub's `usedStorage`)."""
        blobs = {id(f.shard) if f.shard else f.lfs_sha256 if f.is_lfs else f.git_oid: f.size
                 for commit in self.commits.values() for f in commit.files.values()}
        return sum(blobs.values())


# --------------------------------------------------------------------------------------------------------------
# Tensors and shards


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


def _build_shards(seed: str, shard_bytes: int, size_profile: str) -> tuple[list[ShardBody], dict[str, str]]:
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


def _sha256_of(body: ShardBody) -> str:
    digest = hashlib.sha256()
    for offset in range(0, body.size, 1 << 20):
        digest.update(body.read(offset, 1 << 20))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Small files


_BOS = "<｜begin▁of▁sentence｜>"
_EOS = "<｜end▁of▁sentence｜>"
_PAD = "<｜▁pad▁｜>"

_CONFIG = {
    "architectures": ["DeepseekV32ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "index_head_dim": 128,
    "index_n_heads": 64,
    "index_topk": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v32",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "scale_fmt": "ue8m0",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 129280,
}

_GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "do_sample": True,
    "temperature": 1.0,
    "top_p": 0.95,
    "transformers_version": "4.46.3",
}

_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)

_LICENSE = """MIT License

Copyright (c) 2023 DeepSeek

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

_README = """---
license: mit
library_name: transformers
base_model:
- deepseek-ai/DeepSeek-V3.2-Exp-Base
pipeline_tag: text-generation
---
# DeepSeek-V3.2

This copy is served by the Hugging Face Hub stand-in used in tests. File names, layout and metadata follow the
real repository; weights are pseudo-random bytes in valid safetensors files.

## Chat template

This release has no Jinja chat template. Encode conversations with `encoding/encoding_dsv32.py`.

## License

This repository and the model weights are licensed under the MIT License.
"""

_README_CHANGELOG = """
## Changelog

- Clarified the recommended sampling parameters (temperature 1.0, top_p 0.95).
"""

_ENCODING_MODULE = '''"""Prompt encoding for DeepSeek-V3.2 (stand-in copy of the repository's encoding helper)."""

BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
USER = "<\uff5cUser\uff5c>"
ASSISTANT = "<\uff5cAssistant\uff5c>"
THINK_START, THINK_END = "<think>", "</think>"


def encode_messages(messages, thinking_mode="chat"):
    """Render a list of {role, content} messages into the prompt text the model expects."""
    parts = [BOS]
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"])
        elif message["role"] == "user":
            parts.append(USER + message["content"])
        elif message["role"] == "assistant":
            parts.append(ASSISTANT + THINK_END + message["content"] + EOS)
    parts.append(ASSISTANT + (THINK_START if thinking_mode == "thinking" else THINK_END))
    return "".join(parts)


def parse_message_from_completion_text(text, thinking_mode="chat"):
    """Split a completion into reasoning and answer at the end-of-thinking marker."""
    reasoning, _, content = text.rpartition(THINK_END) if thinking_mode == "thinking" else ("", "", text)
    return {"role": "assistant", "reasoning_content": reasoning, "content": content.removesuffix(EOS)}
'''

_GENERATE_SCRIPT = '''"""Reference generation script (stand-in copy): loads the checkpoint and samples text."""

import argparse
import json


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt-path", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.6)
    args = parser.parse_args()
    with open(args.config) as handle:
        print(json.load(handle))


if __name__ == "__main__":
    main()
'''

_INFERENCE_CONFIG = {
    "vocab_size": 129280,
    "dim": 7168,
    "inter_dim": 18432,
    "moe_inter_dim": 2048,
    "n_layers": 61,
    "n_dense_layers": 3,
    "n_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "n_activated_experts": 8,
    "n_expert_groups": 8,
    "n_limited_groups": 4,
    "route_scale": 2.5,
    "score_func": "sigmoid",
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "dtype": "fp8",
    "scale_fmt": "ue8m0",
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 2048,
}


def _byte_level_alphabet() -> list[str]:
    """The printable stand-ins for the 256 byte values used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[byte] for byte in range(256)]


def _added_token(token_id: int, content: str, special: bool = True) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def _tokenizer_json() -> dict:
    alphabet = _byte_level_alphabet()
    vocab = {symbol: 3 + position for position, symbol in enumerate(alphabet)}
    merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"]]
    for left, right in merges:
        vocab[left + right] = len(vocab) + 3
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added_token(0, _BOS), _added_token(1, _EOS), _added_token(2, _PAD),
            _added_token(128798, "<think>", special=False), _added_token(128799, "</think>", special=False),
            _added_token(128803, "<｜User｜>", special=False), _added_token(128804, "<｜Assistant｜>", special=False),
        ],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def _token_entry(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": _token_entry(_BOS),
    "clean_up_tokenization_spaces": False,
    "eos_token": _token_entry(_EOS),
    "legacy": True,
    "model_max_length": 131072,
    "pad_token": _token_entry(_PAD),
    "sp_model_kwargs": {},
    "unk_token": None,
    "tokenizer_class": "LlamaTokenizerFast",
}


def _png(width: int, height: int) -> bytes:
    """A small grey-gradient PNG (the assets folder holds a figure in the real repository)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\0" + bytes((x * 255 // (width - 1)) for x in range(width)) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def _small_files(index: dict) -> dict[str, bytes]:
    return {
        ".gitattributes": _GITATTRIBUTES.encode(),
        "LICENSE": _LICENSE.encode(),
        "README.md": _README.encode(),
        "assets/cost.png": _png(64, 16),
        "config.json": _json_bytes(_CONFIG),
        "encoding/encoding_dsv32.py": _ENCODING_MODULE.encode(),
        "generation_config.json": _json_bytes(_GENERATION_CONFIG),
        "inference/config_671B_v3.2.json": _json_bytes(_INFERENCE_CONFIG),
        "inference/generate.py": _GENERATE_SCRIPT.encode(),
        "inference/requirements.txt": b"torch==2.6.0\ntriton==3.2.0\ntransformers==4.46.3\nsafetensors==0.4.5\n",
        "model.safetensors.index.json": _json_bytes(index),
        "tokenizer.json": json.dumps(_tokenizer_json(), ensure_ascii=False).encode(),
        "tokenizer_config.json": _json_bytes(_TOKENIZER_CONFIG),
    }


# --------------------------------------------------------------------------------------------------------------
# Git objects


def _tree_oids(files: dict[str, HubFile]) -> dict[str, str]:
    """Git tree oid of every sub-directory (they hold only git files), computed like git does."""
    children: dict[str, dict[str, tuple[str, str]]] = {}  # dir -> name -> (mode, blob oid, "" for trees)
    for path, hub_file in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            children.setdefault(directory, {})
            if depth > 1:
                children["/".join(parts[:depth - 1])][parts[depth - 1]] = ("40000", "")
        if len(parts) > 1:
            children["/".join(parts[:-1])][parts[-1]] = ("100644", hub_file.git_oid)

    oids: dict[str, str] = {}

    def tree_oid(directory: str) -> str:
        body = b""
        entries = children[directory]
        for name in sorted(entries, key=lambda n: n + "/" if entries[n][0] == "40000" else n):
            mode, oid = entries[name]
            if mode == "40000":
                oid = tree_oid(f"{directory}/{name}")
            body += f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
        oids[directory] = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        return oids[directory]

    for directory in children:
        if directory not in oids:
            tree_oid(directory)
    return oids


def _commit(seed_material: str, files: dict[str, HubFile], title: str, date: str, parent: str | None) -> Commit:
    # An opaque, deterministic 40-hex id: a true git commit hash would need every shard's sha256 at start-up.
    sha = hashlib.sha1(f"{seed_material}|{title}|{date}|{parent}".encode()).hexdigest()
    return Commit(sha=sha, title=title, date=date, files=dict(sorted(files.items())), tree_oids=_tree_oids(files))


def build_repo(
    *,
    seed: str = DEFAULT_SEED,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    size_profile: str = "small",
    storage: str = "lfs",
    extra_commit: bool = False,
    branches: tuple[str, ...] = ("main",),
) -> Repo:
    """Generate the repository.

    `size_profile="small"` serves shards of about `shard_bytes`; `"real"` reports the real shard sizes and
    serves no shard content. `storage="xet"` makes every LFS file Xet-backed. `branches` all point at the pinned commit; with `extra_commit` a later commit
    (README.md edited) exists and `main` points at it, as when the branch moved after a revision was pinned.
    """
    if size_profile not in ("small", "real"):
        raise ValueError(f"unknown size profile {size_profile!r}")
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}")
    if size_profile == "small" and shard_bytes < MIN_SHARD_BYTES:
        raise ValueError(f"shard size must be at least {MIN_SHARD_BYTES} bytes")
    bodies, weight_map = _build_shards(seed, shard_bytes, size_profile)

    files: dict[str, HubFile] = {}
    for index, body in enumerate(bodies, start=1):
        name = shard_name(index)
        if size_profile == "real":
            # No bytes exist to hash: a stable stand-in digest keeps ETags and metadata consistent.
            digest = hashlib.sha256(f"{seed}:real:{name}:{body.size}".encode()).hexdigest()
            files[name] = HubFile(name, body.size, sha256=digest)
        else:
            files[name] = HubFile(name, body.size, shard=body)
    index = {"metadata": {"total_size": sum(body.data_size for body in bodies)}, "weight_map": weight_map}
    for path, content in _small_files(index).items():
        files[path] = HubFile(path, len(content), content=content)

    seed_material = f"{seed}|{size_profile}|{shard_bytes}"
    first = _commit(seed_material, files, "Upload DeepSeek-V3.2", COMMIT_DATES[0], parent=None)
    commits = {first.sha: first}
    branch_map = {name: first.sha for name in dict.fromkeys(("main",) + tuple(branches))}
    if extra_commit:
        readme = (_README + _README_CHANGELOG).encode()
        later_files = {**files, "README.md": HubFile("README.md", len(readme), content=readme)}
        later = _commit(seed_material, later_files, "Update README.md", COMMIT_DATES[1], parent=first.sha)
        commits[later.sha] = later
        branch_map["main"] = later.sha
    return Repo(
        repo_id=REPO_ID,
        seed=seed,
        size_profile=size_profile,
        storage=storage,
        commits=commits,
        branches=branch_map,
        pinned_commit=first.sha,
        safetensors_parameters={"BF16": 3_918_786_560, "F8_E4M3": 680_571_043_840, "F32": 41_555_600},
    )


# --------------------------------------------------------------------------------------------------------------
# Faults, throttling and statistics

_FAULT_FIELDS = {
    "status": {"status"},
    "hang": {"seconds"},
    "stall": {"seconds", "after_bytes"},
    "drop": {"after_bytes", "mode"},
    "corrupt": set(),
}
_COMMON_FAULT_FIELDS = {"kind", "file", "path", "method", "times", "for_seconds"}


def _normalize_fault(spec: dict) -> dict:
    """Validate a fault spec (see README.md) and add its run-time state."""
    if not isinstance(spec, dict) or spec.get("kind") not in _FAULT_FIELDS:
        raise ValueError(f"fault needs a kind among {sorted(_FAULT_FIELDS)}: {spec!r}")
    kind = spec["kind"]
    unknown = set(spec) - _COMMON_FAULT_FIELDS - _FAULT_FIELDS[kind]
    if unknown:
        raise ValueError(f"unknown fields for a {kind} fault: {sorted(unknown)}")
    fault = {"status": 503} if kind == "status" else {"after_bytes": 0, "mode": "close"} if kind == "drop" else {}
    fault.update(spec)
    if kind in ("hang", "stall") and not isinstance(fault.get("seconds"), (int, float)):
        raise ValueError(f"a {kind} fault needs seconds")
    if kind == "stall" and "after_bytes" not in fault:
        raise ValueError("a stall fault needs after_bytes")
    if kind == "status" and not 400 <= int(fault["status"]) <= 599:
        raise ValueError("status must be a 4xx or 5xx code")
    if kind == "drop" and fault["mode"] not in ("close", "reset"):
        raise ValueError("drop mode is close or reset")
    for name in ("times", "after_bytes"):
        if name in fault and (not isinstance(fault[name], int) or fault[name] < 0):
            raise ValueError(f"{name} must be a non-negative integer")
    fault["remaining"] = fault.pop("times", None)
    window = fault.pop("for_seconds", None)
    fault["expires_at"] = time.monotonic() + float(window) if window is not None else None
    fault["fired"] = 0
    return fault


def _fault_view(fault: dict, now: float) -> dict:
    view = {key: value for key, value in fault.items() if key != "expires_at"}
    if fault["expires_at"] is not None:
        view["seconds_left"] = round(max(0.0, fault["expires_at"] - now), 3)
    return view


class FaultBook:
    """Active faults. Each fires on matching requests until its `times` or `for_seconds` run out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict] = []

    def replace(self, specs: list[dict]) -> None:
        faults = [_normalize_fault(spec) for spec in specs]
        with self._lock:
            self._faults = faults

    def describe(self) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            return [_fault_view(fault, now) for fault in self._faults]

    def take(self, kind: str, method: str, url_path: str, file_path: str | None) -> dict | None:
        """The first live fault of `kind` matching the request, counted as fired."""
        now = time.monotonic()
        with self._lock:
            for fault in self._faults:
                if fault["kind"] != kind or fault["remaining"] == 0:
                    continue
                if fault["expires_at"] is not None and now >= fault["expires_at"]:
                    continue
                if fault.get("method") and fault["method"].upper() != method:
                    continue
                if "path" in fault and not fnmatch.fnmatchcase(url_path, fault["path"]):
                    continue
                if "file" in fault and (file_path is None or not fnmatch.fnmatchcase(file_path, fault["file"])):
                    continue
                if fault["remaining"] is not None:
                    fault["remaining"] -= 1
                fault["fired"] += 1
                return dict(fault)
        return None


class Throttle:
    """Global bandwidth limit shared by every response body (hub and CDN)."""

    def __init__(self, bytes_per_second: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rate = bytes_per_second or None
        self._next_free = 0.0

    @property
    def rate(self) -> int | None:
        return self._rate

    def set(self, bytes_per_second: int | None) -> None:
        with self._lock:
            self._rate = bytes_per_second or None
            self._next_free = 0.0

    def chunk_size(self) -> int:
        rate = self._rate
        return 64 * 1024 if rate is None else max(1024, min(64 * 1024, rate // 20))

    def delay_for(self, nbytes: int) -> float:
        """Reserve a slot for `nbytes` and return how long to wait before sending them."""
        with self._lock:
            if self._rate is None:
                return 0.0
            now = time.monotonic()
            self._next_free = max(now, self._next_free) + nbytes / self._rate
            return self._next_free - now


RATE_LIMIT_BUCKETS = ("api", "resolvers")
DEFAULT_RATE_LIMIT_WINDOW = 300  # the hub counts requests over 5-minute windows


class RateLimits:
    """The hub's rate limits: requests per bucket over fixed windows, announced on every answer of a limited
    bucket with the IETF draft headers the hub sends (`RateLimit: "api";r=<left>;t=<seconds to the reset>` and
    `RateLimit-Policy: "fixed window";"api";q=<limit>;w=<window>`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.set({}, DEFAULT_RATE_LIMIT_WINDOW)

    def set(self, limits: dict[str, int], window: float) -> None:
        unknown = set(limits) - set(RATE_LIMIT_BUCKETS)
        if unknown or window <= 0 or any(not isinstance(n, int) or n < 0 for n in limits.values()):
            raise ValueError(f"rate limits are requests per bucket among {RATE_LIMIT_BUCKETS} and a window > 0 s")
        with self._lock:
            self.limits, self.window = dict(limits), float(window)
            self._started, self._used = time.monotonic(), dict.fromkeys(limits, 0)

    def describe(self) -> dict:
        with self._lock:
            return {"rate_limits": dict(self.limits), "rate_limit_window": self.window}

    def take(self, bucket: str) -> tuple[bool, dict]:
        """Count a request of `bucket`: (allowed, headers to send with the answer)."""
        with self._lock:
            limit = self.limits.get(bucket)
            if limit is None:
                return True, {}
            elapsed = time.monotonic() - self._started
            if elapsed >= self.window:  # a new window: the counts start again
                self._started += elapsed // self.window * self.window
                self._used = dict.fromkeys(self.limits, 0)
            allowed = self._used[bucket] < limit
            self._used[bucket] += allowed
            reset = max(1, round(self._started + self.window - time.monotonic()))
            headers = {"RateLimit": f'"{bucket}";r={limit - self._used[bucket]};t={reset}',
                       "RateLimit-Policy": f'"fixed window";"{bucket}";q={limit};w={round(self.window)}'}
            if not allowed:
                headers["Retry-After"] = reset
            return allowed, headers


class Stats:
    """Request counters, per repository file and per API call, for tests to assert on."""

    FILE_KEYS = ("head", "get", "range_get", "redirect", "bytes_sent", "bodies_completed", "bodies_cut",
                 "with_token")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._files: dict[str, dict[str, int]] = {}
            self._api: dict[str, int] = {}
            self._statuses: dict[str, int] = {}
            self._requests = 0

    def file_event(self, path: str, key: str, amount: int = 1) -> None:
        with self._lock:
            counters = self._files.setdefault(path, dict.fromkeys(self.FILE_KEYS, 0))
            counters[key] += amount

    def api_call(self, name: str) -> None:
        with self._lock:
            self._api[name] = self._api.get(name, 0) + 1

    def response(self, status: int) -> None:
        """Count a request by its answer's status; 0 (shown as "-") when it got no answer."""
        key = str(status) if status else "-"
        with self._lock:
            self._requests += 1
            self._statuses[key] = self._statuses.get(key, 0) + 1

    def as_json(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                "statuses": dict(self._statuses),
                "api": dict(self._api),
                "files": {path: dict(counters) for path, counters in sorted(self._files.items())},
            }


# --------------------------------------------------------------------------------------------------------------
# HTTP


class HubError(Exception):
    """An error answer in the hub's format: X-Error-Code / X-Error-Message headers and {"error": ...} body."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


_SERVER_ERROR_PAGES = {
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    504: "<html><body><h1>504 Gateway Time-out</h1></body></html>",
}
_API_SUBPATHS = {"revision", "tree", "paths-info", "refs", "xet-read-token"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CDN_PATH = re.compile(r"/repos/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}/(?P<sha256>[0-9a-f]{64})")
# The hub's Xet bridge (cas-bridge.xethub.hf.co) serves a Xet-backed file at /xet-bridge-us/<repo _id>/<Xet hash>
# with an S3-style presigned query.
_BRIDGE_PATH = re.compile(r"/xet-bridge-us/[0-9a-f]{24}/(?P<xet_hash>[0-9a-f]{64})")
_CAS_RECONSTRUCTION_PATH = re.compile(r"/v[12]/reconstructions/(?P<xet_hash>[0-9a-f]{64})")
_SIGNED_URL_LIFETIME = 3600
_XET_TOKEN_LIFETIME = 3600
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                  b"<Message>Access denied</Message></Error>")
_UNSATISFIABLE = (-1, -1)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) of a single byte range, None to send the whole file, or _UNSATISFIABLE."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None  # absent, multi-range or malformed: servers may ignore Range and send everything
    first, last = match.groups()
    if first == "":
        length = int(last)
        return (max(0, size - length), size) if length > 0 and size > 0 else _UNSATISFIABLE
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < size and start < end else _UNSATISFIABLE


def _corrupt(data: bytes, offset: int) -> bytes:
    """Flip the byte at every 4 KiB boundary: same size, different sha256, whichever range is served."""
    flipped = bytearray(data)
    for position in range(-offset % 4096, len(flipped), 4096):
        flipped[position] ^= 0x5A
    return bytes(flipped)


@dataclass
class HubState:
    """Everything the request handlers share."""

    repo: Repo
    tokens: frozenset[str] = frozenset()
    tokens_without_access: frozenset[str] = frozenset()
    gated: bool = False
    tree_page_size: int = 1000
    faults: FaultBook = field(default_factory=FaultBook)
    throttle: Throttle = field(default_factory=Throttle)
    stats: Stats = field(default_factory=Stats)
    log: object = sys.stderr
    cdn_port: int = 0
    bridge_port: int = 0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards branch moves and log lines
    secret: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def __post_init__(self) -> None:
        self.blobs: dict[str, HubFile] = {}  # sha256 -> file, filled as the hub hands out CDN redirects
        self.xet_blobs: dict[str, HubFile] = {}  # Xet hash -> file, filled as the hub hands out bridge redirects

    def write_log(self, line: str) -> None:
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()

    def sign(self, path: str, expires: int | str) -> str:
        return hmac.new(self.secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Requests on any listener; `server.role` says which ("hub", "cdn" or "bridge")."""

    protocol_version = "HTTP/1.1"
    server_version = "hf-hub-standin"
    timeout = 120  # idle keep-alive connections

    # -- plumbing ------------------------------------------------------------------------------------------

    @property
    def hub(self) -> HubState:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: object) -> None:
        """Replaced by one access-log line per request, written by `_handle`."""

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self._status, self._body_bytes = 0, 0
        self._rate_limit_headers: dict = {}
        url_path = url.path
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.server.role == "hub" and url_path.startswith("/_sim/"):  # type: ignore[attr-defined]
                self._control(method, url_path, body)
                return
            file_path = self._file_path_of(url_path)
            if self._request_faults(method, url_path, file_path):
                return
            if self.server.role == "cdn":  # type: ignore[attr-defined]
                self._cdn(method, url_path, parse_qs(url.query))
            elif self.server.role == "bridge":  # type: ignore[attr-defined]
                self._bridge(method, url_path, parse_qs(url.query))
            else:
                self._hub(method, url_path, parse_qs(url.query), body)
        except HubError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        finally:
            self.hub.stats.response(self._status)
            # Path only: query strings carry CDN signatures; request headers (tokens) are never logged.
            self.hub.write_log(f'{self.client_address[0]} {self.server.role} "{method} {url_path}" '  # type: ignore[attr-defined]
                               f"{self._status or '-'} {self._body_bytes}")

    def _file_path_of(self, url_path: str) -> str | None:
        """The repository file a content request is about, for fault matching."""
        if self.server.role == "cdn":  # type: ignore[attr-defined]
            match = _CDN_PATH.fullmatch(url_path)
            blob = self.hub.blobs.get(match["sha256"]) if match else None
            return blob.path if blob else None
        if self.server.role == "bridge":  # type: ignore[attr-defined]
            match = _BRIDGE_PATH.fullmatch(url_path)
            blob = self.hub.xet_blobs.get(match["xet_hash"]) if match else None
            return blob.path if blob else None
        segments = url_path.strip("/").split("/")
        if len(segments) > 4 and segments[2] == "resolve":
            return unquote("/".join(segments[4:]))
        return None

    def _request_faults(self, method: str, url_path: str, file_path: str | None) -> bool:
        """Apply hang and status faults; True when a fault took the request over."""
        hang = self.hub.faults.take("hang", method, url_path, file_path)
        if hang:
            # No answer at all: wait, then close the connection (the client has normally timed out by then).
            self.hub.stopping.wait(hang["seconds"])
            self.close_connection = True
            return True
        failure = self.hub.faults.take("status", method, url_path, file_path)
        if failure:
            status = int(failure["status"])
            text = _SERVER_ERROR_PAGES.get(status, f"Simulated error {status}")
            if text.startswith("<html>"):
                self._send_bytes(status, text.encode(), "text/html", method=method)
            else:
                self._send_json(status, {"error": text}, method=method)
            return True
        return False

    def _send_headers(self, status: int, headers: dict) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("X-Request-Id", f"Root={uuid.uuid4()}")
        for name, value in {**self._rate_limit_headers, **headers}.items():
            self.send_header(name, str(value))
        self.end_headers()

    def _send_bytes(self, status: int, payload: bytes, content_type: str, headers: dict | None = None,
                    method: str = "GET") -> None:
        self._send_headers(status, {"Content-Type": content_type, "Content-Length": len(payload), **(headers or {})})
        if method != "HEAD":
            self.wfile.write(payload)
            self._body_bytes += len(payload)

    def _send_json(self, status: int, value: object, headers: dict | None = None, method: str = "GET") -> None:
        self._send_bytes(status, json.dumps(value).encode(), "application/json; charset=utf-8", headers, method)

    def _send_error(self, error: HubError) -> None:
        headers = dict(error.headers)
        if error.code:
            headers["X-Error-Code"] = error.code
        headers["X-Error-Message"] = error.message
        self._send_json(error.status, {"error": error.message}, headers, method=self.command)

    def _base_url(self, port: int) -> str:
        host = (self.headers.get("Host") or self.server.server_address[0]).rsplit(":", 1)[0]
        return f"http://{host}:{port}"

    # -- test control ----------------------------------------------------------------------------------------

    def _control(self, method: str, url_path: str, body: bytes) -> None:
        hub = self.hub
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = None
        if not isinstance(request, dict):
            raise HubError(400, None, "body must be a JSON object")
        if (method, url_path) == ("GET", "/_sim/info"):
            self._send_json(200, {
                "repo_id": hub.repo.repo_id,
                "size_profile": hub.repo.size_profile,
                "pinned_commit": hub.repo.pinned_commit,
                "branches": dict(hub.repo.branches),
                "commits": [{"sha": c.sha, "title": c.title, "date": c.date} for c in hub.repo.commits.values()],
                "storage": hub.repo.storage,
                "cdn_url": self._base_url(hub.cdn_port),
                "bridge_url": self._base_url(hub.bridge_port),
                "gated": hub.gated,
                "tree_page_size": hub.tree_page_size,
            })
        elif url_path == "/_sim/faults" and method in ("GET", "POST", "DELETE"):
            try:
                if method == "DELETE":
                    hub.faults.replace([])
                    hub.throttle.set(None)
                    hub.rate_limits.set({}, DEFAULT_RATE_LIMIT_WINDOW)
                if "rate_limits" in request or "rate_limit_window" in request:
                    hub.rate_limits.set(request.get("rate_limits") or {},
                                        request.get("rate_limit_window", DEFAULT_RATE_LIMIT_WINDOW))
                if "faults" in request:
                    hub.faults.replace(request["faults"])
                if "throttle_bps" in request:
                    rate = request["throttle_bps"]
                    hub.throttle.set(None if rate is None else int(rate))
            except (ValueError, TypeError) as error:
                raise HubError(400, None, str(error)) from None
            self._send_json(200, {"faults": hub.faults.describe(), "throttle_bps": hub.throttle.rate,
                                  **hub.rate_limits.describe()})
        elif url_path == "/_sim/stats" and method in ("GET", "DELETE"):
            if method == "DELETE":
                hub.stats.reset()
            self._send_json(200, hub.stats.as_json())
        elif (method, url_path) == ("POST", "/_sim/refs"):
            unknown = {sha for sha in request.values() if sha not in hub.repo.commits}
            if unknown:
                raise HubError(400, None, f"unknown commits: {sorted(unknown)}")
            with hub.lock:
                hub.repo.branches.update(request)
            self._send_json(200, {"branches": dict(hub.repo.branches)})
        else:
            raise HubError(404, None, "unknown control endpoint")

    # -- hub -----------------------------------------------------------------------------------------------

    def _hub(self, method: str, url_path: str, query: dict, body: bytes) -> None:
        segments = url_path.strip("/").split("/")
        self._rate_limit(segments)
        token_state = self._token_state()
        if segments[0] == "api" and len(segments) >= 3 and segments[1] in ("models", "datasets", "spaces", "kernels"):
            repo_segments = segments[2:]
            split = 2 if len(repo_segments) >= 2 and repo_segments[1] not in _API_SUBPATHS else 1
            repo_id, rest = "/".join(repo_segments[:split]), repo_segments[split:]
            self._check_repo(segments[1] == "models", repo_id, token_state)
            if rest[:1] == ["xet-read-token"]:  # a token to read the files: gated like them
                self._check_gate(token_state)
            self._api(method, rest, query, body)
            return
        if "resolve" in segments[1:4] and method in ("GET", "HEAD"):
            at = segments.index("resolve")
            repo_segments = segments[:at]
            is_model = repo_segments[0] not in ("datasets", "spaces", "kernels")
            self._check_repo(is_model, "/".join(repo_segments if is_model else repo_segments[1:]), token_state)
            self._check_gate(token_state)
            if len(segments) < at + 3:
                raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
            self._resolve(method, unquote(segments[at + 1]), unquote("/".join(segments[at + 2:])))
            return
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _rate_limit(self, segments: list[str]) -> None:
        """Count the request in its bucket; over the limit, the hub answers 429 with Retry-After."""
        bucket = "api" if segments[0] == "api" else "resolvers" if "resolve" in segments[1:4] else None
        if bucket is None:
            return
        allowed, self._rate_limit_headers = self.hub.rate_limits.take(bucket)
        if not allowed:
            limits = self.hub.rate_limits
            raise HubError(429, None, f"Too Many Requests: you have reached the '{bucket}' rate limit of "
                                      f"{limits.limits[bucket]} requests per {limits.window:g} s; retry after "
                                      f"{self._rate_limit_headers['Retry-After']} s")

    def _token_state(self) -> str:
        """anonymous, granted, no_access (valid token without access to the gated repo); invalid raises 401."""
        header = self.headers.get("Authorization")
        if not header:
            return "anonymous"
        token = header.removeprefix("Bearer ").strip()
        if token in self.hub.tokens:
            return "granted"
        if token in self.hub.tokens_without_access:
            return "no_access"
        raise HubError(401, None, "Invalid credentials in Authorization header")

    def _check_repo(self, is_model: bool, repo_id: str, token_state: str) -> None:
        if not is_model or repo_id != self.hub.repo.repo_id:
            # The hub answers 401 to anonymous requests for missing (or private) repos, 404 to authenticated ones.
            raise HubError(401 if token_state == "anonymous" else 404, "RepoNotFound", "Repository not found")

    def _check_gate(self, token_state: str) -> None:
        repo_id = self.hub.repo.repo_id
        if not self.hub.gated or token_state == "granted":
            return
        if token_state == "anonymous":
            raise HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                                             "and be authenticated to access it. Please log in.")
        raise HubError(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                                         f"authorized list. Visit https://huggingface.co/{repo_id} to ask for access.")

    def _commit(self, revision: str) -> Commit:
        with self.hub.lock:
            sha = self.hub.repo.branches.get(revision, revision)
        commit = self.hub.repo.commits.get(sha)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _api(self, method: str, rest: list[str], query: dict, body: bytes) -> None:
        if method == "GET" and not rest:
            self._model_info(self._commit("main"), query)
        elif method == "GET" and len(rest) == 2 and rest[0] == "revision":
            self._model_info(self._commit(unquote(rest[1])), query)
        elif method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            self._tree(self._commit(unquote(rest[1])), rest[1], unquote("/".join(rest[2:])), query)
        elif method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
            self._paths_info(self._commit(unquote(rest[1])), body)
        elif method == "GET" and len(rest) == 2 and rest[0] == "xet-read-token":
            self._xet_read_token(self._commit(unquote(rest[1])))
        elif method == "GET" and rest == ["refs"]:
            self.hub.stats.api_call("refs")
            with self.hub.lock:
                branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                            for name, sha in self.hub.repo.branches.items()]
            refs = {"branches": branches, "converts": [], "tags": []}
            if query.get("include_prs"):
                refs["pullRequests"] = []
            self._send_json(200, refs)
        else:
            raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _model_info(self, commit: Commit, query: dict) -> None:
        self.hub.stats.api_call("model_info")
        repo = self.hub.repo
        with_blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for hub_file in commit.files.values():
            sibling: dict = {"rfilename": hub_file.path}
            if with_blobs:
                sibling.update(size=hub_file.size, blobId=hub_file.git_oid)
                if hub_file.is_lfs:
                    sibling["lfs"] = {"sha256": hub_file.lfs_sha256, "size": hub_file.size,
                                      "pointerSize": hub_file.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": CREATED_AT,
            "private": False,
            "disabled": False,
            "gated": "manual" if self.hub.gated else False,
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "tags": ["transformers", "safetensors", "deepseek_v32", "text-generation", "conversational",
                     "base_model:deepseek-ai/DeepSeek-V3.2-Exp-Base", "license:mit", "fp8", "region:us"],
            "config": {"architectures": _CONFIG["architectures"], "model_type": _CONFIG["model_type"],
                       "quantization_config": {"quant_method": "fp8"},
                       "tokenizer_config": {"bos_token": _BOS, "eos_token": _EOS, "pad_token": _PAD}},
            "cardData": {"license": "mit", "library_name": "transformers",
                         "base_model": ["deepseek-ai/DeepSeek-V3.2-Exp-Base"], "pipeline_tag": "text-generation"},
            "transformersInfo": {"auto_model": "AutoModelForCausalLM", "pipeline_tag": "text-generation",
                                 "processor": "AutoTokenizer"},
            "siblings": siblings,
            "spaces": [],
            "safetensors": {"parameters": dict(repo.safetensors_parameters),
                            "total": sum(repo.safetensors_parameters.values())},
            "usedStorage": repo.used_storage(),
        }
        if query.get("securityStatus"):
            info["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = query.get("expand") or query.get("expand[]")
        if expand:
            info = {key: value for key, value in info.items() if key in {"_id", "id", *expand}}
        self._send_json(200, info)

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict:
        """A tree / paths-info entry for a file or a directory of `commit`."""
        if path in commit.files:
            hub_file = commit.files[path]
            entry: dict = {"type": "file", "oid": hub_file.git_oid, "size": hub_file.size, "path": path}
            if hub_file.is_lfs:
                entry["lfs"] = {"oid": hub_file.lfs_sha256, "size": hub_file.size,
                                "pointerSize": hub_file.pointer_size}
                if self.hub.repo.storage == "xet":
                    entry["xetHash"] = hub_file.xet_hash
        else:
            entry = {"type": "directory", "oid": commit.tree_oids[path], "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
            if entry["type"] == "file":
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                               "pickleImportScan": None}
        return entry

    def _tree(self, commit: Commit, quoted_revision: str, folder: str, query: dict) -> None:
        self.hub.stats.api_call("tree")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
        if folder and folder not in commit.tree_oids:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on \"{quoted_revision}\"",
                           {"X-Repo-Commit": commit.sha})
        prefix = f"{folder}/" if folder else ""
        paths = sorted(
            path for path in [*commit.files, *commit.tree_oids]
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])
        )
        if "cursor" in query:
            after = json.loads(base64.urlsafe_b64decode(query["cursor"][0]))["file_name"]
            paths = [path for path in paths if path > after]
        page_size = 50 if expand else self.hub.tree_page_size
        page, more = paths[:page_size], len(paths) > page_size
        headers = {}
        if more:
            cursor = base64.urlsafe_b64encode(json.dumps({"file_name": page[-1]}).encode()).decode()
            folder_part = "/" + quote(folder, safe="") if folder else ""
            params = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(),
                                "cursor": cursor})
            next_url = (f"{self._base_url(self.server.server_address[1])}/api/models/{self.hub.repo.repo_id}"
                        f"/tree/{quoted_revision}{folder_part}?{params}")
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(200, [self._entry(commit, path, expand) for path in page], headers)

    def _paths_info(self, commit: Commit, body: bytes) -> None:
        self.hub.stats.api_call("paths_info")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            request = json.loads(body or b"{}")
            paths, expand = request.get("paths", []), bool(request.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() in ("1", "true")
        known = [path.strip("/") for path in paths
                 if path.strip("/") in commit.files or path.strip("/") in commit.tree_oids]
        self._send_json(200, [self._entry(commit, path, expand) for path in dict.fromkeys(known)])

    def _xet_read_token(self, commit: Commit) -> None:
        """A short-lived token for Xet storage: huggingface_hub reads the X-Xet-* headers, other clients the
        JSON body; hf_xet then asks the CAS (`casUrl`) how to rebuild each file."""
        self.hub.stats.api_call("xet_read_token")
        expires = int(time.time()) + _XET_TOKEN_LIFETIME
        token = "xet_" + self.hub.sign(f"xet-read|{commit.sha}", expires)[:48]
        cas_url = self._base_url(self.hub.bridge_port)
        self._send_json(200, {"casUrl": cas_url, "exp": expires, "accessToken": token},
                        {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": expires})

    def _resolve(self, method: str, revision: str, path: str) -> None:
        commit = self._commit(revision)
        hub_file = commit.files.get(path)
        if hub_file is None:
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        self.hub.stats.file_event(path, "head" if method == "HEAD" else "get")
        common = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes", "Vary": "Origin, Accept-Encoding"}
        if not hub_file.is_lfs:
            self._content(method, hub_file, {**common, "ETag": f'"{hub_file.git_oid}"'})
            return
        # LFS files live on the CDN, Xet-backed ones behind the Xet bridge: the hub answers with a signed redirect
        # carrying the file's metadata.
        self.hub.stats.file_event(path, "redirect")
        name = path.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        headers = {**common, "ETag": f'"{hub_file.lfs_sha256}"', "X-Linked-Etag": f'"{hub_file.lfs_sha256}"',
                   "X-Linked-Size": hub_file.size}
        if self.hub.repo.storage == "xet":
            headers["Location"] = self._bridge_location(hub_file, disposition)
            # What huggingface_hub's parse_xet_file_data_from_response reads: the hash, and the token route.
            headers["X-Xet-Hash"] = hub_file.xet_hash
            token_url = f"{self._base_url(self.server.server_address[1])}/api/models/{self.hub.repo.repo_id}" \
                        f"/xet-read-token/{commit.sha}"
            headers["Link"] = (f'<{token_url}>; rel="xet-auth", <{self._base_url(self.hub.bridge_port)}'
                               f'/v1/reconstructions/{hub_file.xet_hash}>; rel="xet-reconstruction-info"')
        else:
            self.hub.blobs.setdefault(hub_file.lfs_sha256, hub_file)
            expires = int(time.time()) + _SIGNED_URL_LIFETIME
            repo_hash = hashlib.sha256(self.hub.repo.repo_id.encode()).hexdigest()
            cdn_path = f"/repos/{repo_hash[:2]}/{repo_hash[2:4]}/{repo_hash}/{hub_file.lfs_sha256}"
            params = urlencode({"response-content-disposition": disposition, "Expires": expires,
                                "Signature": self.hub.sign(cdn_path, expires)})
            headers["Location"] = f"{self._base_url(self.hub.cdn_port)}{cdn_path}?{params}"
        self._send_bytes(302, f"Found. Redirecting to {headers['Location']}".encode(), "text/plain; charset=utf-8",
                         headers, method=method)

    def _bridge_location(self, hub_file: HubFile, disposition: str) -> str:
        """A presigned bridge URL in the S3 style of the hub's (X-Amz-Date and X-Amz-Expires bound its lifetime)."""
        self.hub.xet_blobs.setdefault(hub_file.xet_hash, hub_file)
        repo_object_id = hashlib.sha1(self.hub.repo.repo_id.encode()).hexdigest()[:24]  # the model info's _id
        bridge_path = f"/xet-bridge-us/{repo_object_id}/{hub_file.xet_hash}"
        signed_at = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        params = urlencode({
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Date": signed_at, "X-Amz-Expires": _SIGNED_URL_LIFETIME,
            "X-Amz-SignedHeaders": "host", "X-Amz-Signature": self.hub.sign(bridge_path, signed_at),
            "X-Xet-Cas-Uid": "public", "response-content-disposition": disposition, "x-id": "GetObject"})
        return f"{self._base_url(self.hub.bridge_port)}{bridge_path}?{params}"

    # -- cdn -----------------------------------------------------------------------------------------------

    def _cdn(self, method: str, url_path: str, query: dict) -> None:
        match = _CDN_PATH.fullmatch(url_path)
        hub_file = self.hub.blobs.get(match["sha256"]) if match else None
        expires = query.get("Expires", ["0"])[0]
        signature = query.get("Signature", [""])[0]
        valid = (hub_file is not None and expires.isdigit() and int(expires) > time.time()
                 and hmac.compare_digest(signature, self.hub.sign(url_path, int(expires))))
        if method not in ("GET", "HEAD") or not valid:
            self._send_bytes(403, _ACCESS_DENIED, "text/xml", method=method)
            return
        self._count_storage_request(method, hub_file)
        disposition = query.get("response-content-disposition", [None])[0]
        headers = {"ETag": f'"{hub_file.lfs_sha256}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Mon, 01 Dec 2025 09:32:41 GMT", "X-Cache": "Miss from cloudfront"}
        if disposition:
            headers["Content-Disposition"] = disposition
        self._content(method, hub_file, headers)

    def _count_storage_request(self, method: str, hub_file: HubFile) -> None:
        """Count a request of the CDN or the bridge, and whether it carried the hub token (it must not)."""
        self.hub.stats.file_event(hub_file.path, "head" if method == "HEAD" else "get")
        if self.headers.get("Authorization"):
            self.hub.stats.file_event(hub_file.path, "with_token")

    # -- Xet bridge and CAS ------------------------------------------------------------------------------

    def _bridge(self, method: str, url_path: str, query: dict) -> None:
        reconstruction = _CAS_RECONSTRUCTION_PATH.fullmatch(url_path)
        if reconstruction:
            self.hub.stats.api_call("xet_reconstruction")
            raise HubError(501, None, "hf_hub stand-in: the Xet CAS protocol (file reconstruction) is not "
                                      "reproduced; download with HF_HUB_DISABLE_XET=1, the client's HTTP path "
                                      "through the bridge")
        match = _BRIDGE_PATH.fullmatch(url_path)
        hub_file = self.hub.xet_blobs.get(match["xet_hash"]) if match else None
        signed_at = query.get("X-Amz-Date", [""])[0]
        try:
            expires = calendar.timegm(time.strptime(signed_at, "%Y%m%dT%H%M%SZ")) \
                + int(query.get("X-Amz-Expires", ["0"])[0])
        except ValueError:
            expires = 0
        valid = (hub_file is not None and expires > time.time() and hmac.compare_digest(
            query.get("X-Amz-Signature", [""])[0], self.hub.sign(url_path, signed_at)))
        if method not in ("GET", "HEAD") or not valid:
            self._send_bytes(403, _ACCESS_DENIED, "text/xml", method=method)
            return
        self._count_storage_request(method, hub_file)
        headers = {"ETag": f'"{hub_file.xet_hash}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Mon, 01 Dec 2025 09:32:41 GMT"}
        disposition = query.get("response-content-disposition", [None])[0]
        if disposition:
            headers["Content-Disposition"] = disposition
        self._content(method, hub_file, headers)

    # -- file bytes ----------------------------------------------------------------------------------------

    def _content(self, method: str, hub_file: HubFile, headers: dict) -> None:
        """Send a file or a byte range of it, applying drop/stall/corrupt faults and the throttle."""
        size = hub_file.size
        byte_range = _parse_range(self.headers.get("Range"), size)
        if byte_range == _UNSATISFIABLE:
            self._send_bytes(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{size}"}, method)
            return
        start, end = byte_range or (0, size)
        if method == "GET" and not hub_file.servable:
            raise HubError(501, None, "hf_hub stand-in: size profile 'real' serves metadata only; "
                                      f"the content of {hub_file.path} is not available")
        content_type = mimetypes.guess_type(hub_file.path)[0] or "application/octet-stream"
        headers = {**headers, "Content-Type": content_type, "Content-Length": end - start}
        if byte_range:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if method == "HEAD":
            self._send_headers(206 if byte_range else 200, headers)
            return
        if byte_range:
            self.hub.stats.file_event(hub_file.path, "range_get")
        url_path = urlsplit(self.path).path
        drop = self.hub.faults.take("drop", method, url_path, hub_file.path)
        stall = self.hub.faults.take("stall", method, url_path, hub_file.path)
        corrupt = self.hub.faults.take("corrupt", method, url_path, hub_file.path)
        self._send_headers(206 if byte_range else 200, headers)
        self._stream(hub_file, start, end, drop=drop, stall=stall, corrupt=corrupt is not None)

    def _stream(self, hub_file: HubFile, start: int, end: int, *, drop: dict | None, stall: dict | None,
                corrupt: bool) -> None:
        hub, sent, total = self.hub, 0, end - start
        drop_at = drop["after_bytes"] if drop else None
        stall_at = stall["after_bytes"] if stall else None
        while sent < total:
            if stall_at is not None and sent >= stall_at:
                stall_at = None
                if hub.stopping.wait(stall["seconds"]):
                    return
            if drop_at is not None and sent >= drop_at:
                self._cut_connection(drop["mode"])
                hub.stats.file_event(hub_file.path, "bodies_cut")
                return
            count = min(hub.throttle.chunk_size(), total - sent)
            for boundary in (drop_at, stall_at):
                if boundary is not None and sent < boundary < sent + count:
                    count = boundary - sent
            data = hub_file.read(start + sent, count)
            if corrupt:
                data = _corrupt(data, start + sent)
            delay = hub.throttle.delay_for(count)
            if delay and hub.stopping.wait(delay):
                return
            self.wfile.write(data)
            sent += count
            self._body_bytes += count
            hub.stats.file_event(hub_file.path, "bytes_sent", count)
        hub.stats.file_event(hub_file.path, "bodies_completed")

    def _cut_connection(self, mode: str) -> None:
        """End the response early: `close` sends FIN (truncated body), `reset` sends RST."""
        self.close_connection = True
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket only really closes once its file objects are gone
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], role: str, hub: HubState) -> None:
        self.role, self.hub = role, hub
        super().__init__(address, _Handler)

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        """Client disconnects mid-response are normal under fault injection; report anything else briefly."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.hub.write_log(f"{self.role}: error serving {client_address[0]}: {error!r}")


class HubServer:
    """The hub, its CDN and its Xet bridge on three ports of one host; use as a context manager or
    start()/stop()."""

    def __init__(self, repo: Repo, *, host: str = "127.0.0.1", port: int = 0, cdn_port: int = 0,
                 bridge_port: int = 0, tokens: tuple[str, ...] = (), tokens_without_access: tuple[str, ...] = (),
                 gated: bool = False, tree_page_size: int = 1000, faults: tuple[dict, ...] = (),
                 throttle_bps: int | None = None, rate_limits: dict[str, int] | None = None,
                 rate_limit_window: float = DEFAULT_RATE_LIMIT_WINDOW, log: object = sys.stderr) -> None:
        self.state = HubState(repo=repo, tokens=frozenset(tokens),
                              tokens_without_access=frozenset(tokens_without_access), gated=gated,
                              tree_page_size=tree_page_size, throttle=Throttle(throttle_bps), log=log)
        self.state.faults.replace(list(faults))
        self.state.rate_limits.set(rate_limits or {}, rate_limit_window)
        self._cdn = _Listener((host, cdn_port), "cdn", self.state)
        self.state.cdn_port = self._cdn.server_address[1]
        self._bridge = _Listener((host, bridge_port), "bridge", self.state)
        self.state.bridge_port = self._bridge.server_address[1]
        self._hub = _Listener((host, port), "hub", self.state)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._hub.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._cdn.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bridge_url(self) -> str:
        host, port = self._bridge.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        for listener in (self._cdn, self._bridge, self._hub):
            thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        for listener in (self._hub, self._cdn, self._bridge):
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Hugging Face Hub stand-in serving deepseek-ai/DeepSeek-V3.2.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cdn-port", type=int, default=0, help="port of the CDN listener (0 picks a free port)")
    parser.add_argument("--bridge-port", type=int, default=0,
                        help="port of the Xet bridge listener (0 picks a free port)")
    parser.add_argument("--seed", default=DEFAULT_SEED)
    parser.add_argument("--shard-bytes", type=int, default=DEFAULT_SHARD_BYTES,
                        help="approximate size of each shard (varies by up to 10%% per shard)")
    parser.add_argument("--size-profile", choices=("small", "real"), default="small",
                        help="real: report the real shard sizes (~689 GB in all) and serve no shard content")
    parser.add_argument("--storage", choices=STORAGES, default="lfs",
                        help="xet: every shard is Xet-backed, its bytes served by the bridge (as on today's hub)")
    parser.add_argument("--revision-branch", action="append", default=[], metavar="NAME",
                        help="extra branch name pointing at the pinned commit (main always exists)")
    parser.add_argument("--extra-commit", action="store_true",
                        help="add a later commit (README.md edited) and point main at it")
    parser.add_argument("--token", action="append", default=[], help="a valid token with access (repeatable)")
    parser.add_argument("--token-without-access", action="append", default=[],
                        help="a valid token not granted access to the gated repo (repeatable)")
    parser.add_argument("--gated", action="store_true", help="gate the repo: file downloads need a granted token")
    parser.add_argument("--tree-page-size", type=int, default=1000, help="entries per tree page (hub: 1000)")
    parser.add_argument("--fault", action="append", default=[], metavar="JSON",
                        help='a fault, e.g. \'{"kind": "drop", "file": "model-00002-*", "after_bytes": 1000}\'')
    parser.add_argument("--throttle-bps", type=int, default=None, help="global bandwidth limit in bytes/s")
    parser.add_argument("--rate-limit", action="append", default=[], metavar="BUCKET=N",
                        help=f"requests per window in a bucket ({', '.join(RATE_LIMIT_BUCKETS)}); repeatable")
    parser.add_argument("--rate-limit-window", type=float, default=DEFAULT_RATE_LIMIT_WINDOW,
                        help="seconds of a rate-limit window (hub: 300)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        faults = tuple(json.loads(spec) for spec in args.fault)
        rate_limits = {bucket: int(count) for bucket, _, count in (spec.partition("=") for spec in args.rate_limit)}
        repo = build_repo(seed=args.seed, shard_bytes=args.shard_bytes, size_profile=args.size_profile,
                          storage=args.storage, extra_commit=args.extra_commit, branches=tuple(args.revision_branch))
        server = HubServer(repo, host=args.host, port=args.port, cdn_port=args.cdn_port, bridge_port=args.bridge_port,
                           tokens=tuple(args.token), tokens_without_access=tuple(args.token_without_access),
                           gated=args.gated, tree_page_size=args.tree_page_size, faults=faults,
                           throttle_bps=args.throttle_bps, rate_limits=rate_limits,
                           rate_limit_window=args.rate_limit_window)
    except (ValueError, OSError) as error:
        print(f"hf_hub stand-in: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"hf_hub stand-in: {repo.storage} storage, CDN at {server.cdn_url}, Xet bridge at "
              f"{server.bridge_url}, main -> {repo.branches['main']}", file=sys.stderr, flush=True)
        print(f"READY {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
