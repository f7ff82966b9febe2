"""What differs between vLLM releases (VLLM_STANDIN_VERSION, default 0.33.0). Each rule was read in the wheels of
0.17.0, 0.18.0, 0.19.0, 0.22.0, 0.27.0, 0.30.0 and 0.33.0; a change is placed at the first sampled release that
shows it (README: "Releases")."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_VERSION = "0.33.0"


def version_tuple(text: str) -> tuple[int, int, int]:
    numbers = [int(part) for part in re.findall(r"\d+", text)[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


AITER_INDEXER_ERRORS = (
    # (first sampled release with the text, text); platforms/rocm.py / layers/sparse_attn_indexer.py forward_hip
    ((0, 0, 0), "Sparse attention indexer ROCm custom op requires ROCm Aiter ops to be enabled."),
    ((0, 22, 0), ("Sparse attention indexer ROCm path is only supported on AITER. "
                  "Please enable aiter with VLLM_ROCM_USE_AITER=1")),
    ((0, 30, 0), ("Sparse attention indexer ROCm path requires AITER or a supported native architecture "
                  "(gfx950/gfx11).")),
)


@dataclass(frozen=True)
class Release:
    version: str

    @property
    def number(self) -> tuple[int, int, int]:
        return version_tuple(self.version)

    @property
    def checks_sparse_backend_in_selector(self) -> bool:
        # 0.17 platforms/rocm.py get_attn_backend_cls: fp8 kv cache ValueError and `assert block_size == 1`.
        return self.number < (0, 18, 0)

    @property
    def offloading_misses_indexer_cache(self) -> bool:
        # 0.17 OffloadingConnector looks layers up as `Attention`; the indexer's k_cache is not one -> KeyError.
        return self.number < (0, 18, 0)

    @property
    def defaults_tokenizer_mode_for_dsv32(self) -> bool:
        # config/model.py: tokenizer_mode "auto" becomes "deepseek_v32" for DeepseekV32ForCausalLM from 0.18.
        return self.number >= (0, 18, 0)

    @property
    def has_shutdown_timeout(self) -> bool:
        return self.number >= (0, 18, 0)

    @property
    def omits_empty_tool_calls(self) -> bool:
        # chat_completion/protocol.py ChatMessage drops an empty `tool_calls` from 0.27.
        return self.number >= (0, 27, 0)

    @property
    def fp8_bmm_default(self) -> bool:
        # envs.py VLLM_ROCM_USE_AITER_FP8BMM: default "True" up to 0.30, "False" in 0.33.
        return self.number < (0, 33, 0)

    @property
    def indexer_runs_natively_on_gfx950(self) -> bool:
        return self.number >= (0, 30, 0)

    @property
    def server_start_message(self) -> str:
        return "Starting vLLM API server 0 on %s" if self.number < (0, 18, 0) else "Starting vLLM server on %s"

    def aiter_indexer_error(self) -> str:
        return [text for first, text in AITER_INDEXER_ERRORS if self.number >= first][-1]
