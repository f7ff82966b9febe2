"""The repository's git files: config, generation config, tokenizer, code, card, licence, `.gitattributes` and a
figure (the shards' index is passed in)."""

from __future__ import annotations

import json
import struct
import zlib

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"

CONFIG = {
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

README = """---
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

README_CHANGELOG = """
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
            _added_token(0, BOS), _added_token(1, EOS), _added_token(2, PAD),
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
    "bos_token": _token_entry(BOS),
    "clean_up_tokenization_spaces": False,
    "eos_token": _token_entry(EOS),
    "legacy": True,
    "model_max_length": 131072,
    "pad_token": _token_entry(PAD),
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


def small_files(index: dict) -> dict[str, bytes]:
    return {
        ".gitattributes": _GITATTRIBUTES.encode(),
        "LICENSE": _LICENSE.encode(),
        "README.md": README.encode(),
        "assets/cost.png": _png(64, 16),
        "config.json": _json_bytes(CONFIG),
        "encoding/encoding_dsv32.py": _ENCODING_MODULE.encode(),
        "generation_config.json": _json_bytes(_GENERATION_CONFIG),
        "inference/config_671B_v3.2.json": _json_bytes(_INFERENCE_CONFIG),
        "inference/generate.py": _GENERATE_SCRIPT.encode(),
        "inference/requirements.txt": b"torch==2.6.0\ntriton==3.2.0\ntransformers==4.46.3\nsafetensors==0.4.5\n",
        "model.safetensors.index.json": _json_bytes(index),
        "tokenizer.json": json.dumps(_tokenizer_json(), ensure_ascii=False).encode(),
        "tokenizer_config.json": _json_bytes(_TOKENIZER_CONFIG),
    }
