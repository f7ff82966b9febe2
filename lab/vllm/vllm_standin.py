#!/usr/bin/env python3
"""Stand-in for `vllm serve` of the vllm/vllm-openai-rocm image serving DeepSeek V3.2 on AMD Instinct GPUs.

Stdlib only (Python 3.11, asyncio). Invoked like the image's entrypoint:

    python3 vllm_standin.py serve --model deepseek-ai/DeepSeek-V3.2 --tensor-parallel-size 8 --block-size 1 ...

It reproduces what a deployment can observe of vLLM 0.33.0 (the release set by VLLM_STANDIN_VERSION, default
0.33.0): the command line (every `vllm serve` option of the release, argparse's errors and exit code 2), the
start-up checks and failures with vLLM's log format and texts (GPU device nodes, AITER, the ROCm sparse-MLA rules,
the Hugging Face cache in offline mode, tensor parallelism beyond the GPUs present), a start-up time that is
shorter when the kernel caches are warm, the OpenAI-compatible HTTP API with vLLM's response shapes and error
bodies, Prometheus metrics, a token scheduler whose throughput saturates like a GPU server's, and SIGTERM
handling. README.md next to this file names the vLLM source each behaviour and text comes from, what is not
reproduced, and every SIM_* setting.

The code is the standin/ package beside this file, one module per concern (README.md lists them). This file is
the command: run as a script, its folder is the first entry of sys.path, so `standin` imports as a package.
"""

import sys

from standin.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
