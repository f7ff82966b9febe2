"""The option table of `vllm serve` in vLLM 0.33.0 (for every release), its restricted values, and the registered
tool-call and reasoning parsers."""

from __future__ import annotations

# Every option of `vllm serve` in vLLM 0.33.0, by how argparse takes it: extracted from the wheel's
# entrypoints/common/cli_args.py (make_arg_parser, FrontendArgs) and engine/arg_utils.py (EngineArgs.add_cli_args)
# with the config dataclasses' field types (engine/arg_utils.py _compute_kwargs). "|" joins aliases.
SERVE_OPTIONS = {
    "value": """
--chat-template --chat-template-content-format --default-chat-template-kwargs --reasoning-effort-map
--response-role --tool-call-parser --tool-parser-plugin --tool-strict-level --tool-server --cohere-format
--anthropic-disabled-thinking-effort --fingerprint-mode --fingerprint-value --host --uds --uvicorn-log-level
--disable-access-log-for-endpoints --allowed-origins --allowed-methods --allowed-headers --ssl-keyfile
--ssl-certfile --ssl-ca-certs --ssl-ciphers --root-path --middleware --config --runner --convert --tokenizer
--tokenizer-mode --dtype --hf-config-path --allowed-local-media-path --revision --code-revision
--tokenizer-revision --quantization|-q --quantization-config --logprobs-mode --config-format --hf-overrides
--model-class-overrides --pooler-config --generation-config --override-generation-config --sleep-mode-backend
--model-impl --io-processor-plugin --load-format --download-dir --safetensors-load-strategy
--model-loader-extra-config --pt-load-map-location --attention-backend --mamba-backend --mamba-ssu-algorithm
--reasoning-parser --reasoning-parser-plugin --distributed-executor-backend --master-addr --device-ids
--dcp-comm-backend --data-parallel-address|-dpa --data-parallel-backend|-dpb --all2all-backend --eplb-config
--expert-placement-strategy --worker-cls --worker-extension-cls --fault-tolerance-config --kv-cache-dtype
--prefix-caching-hash-algo --mamba-cache-dtype --mamba-ssm-cache-dtype --mamba-cache-mode --kv-offloading-backend
--offload-backend --limit-mm-per-prompt --media-io-kwargs --mm-processor-kwargs --mm-processor-cache-type
--mm-hasher-algorithm --mm-encoder-tp-mode --mm-encoder-attn-backend --mm-encoder-attn-dtype
--mm-encoder-fp8-scale-path --mm-encoder-fp8-scale-save-path --video-pruning-method --mm-tensor-ipc
--mm-processor-device --max-lora-rank --lora-dtype --default-mm-loras --logging-config --log-level
--log-config-file --show-hidden-metrics-for-version --otlp-traces-endpoint --per-request-spec-decode-metrics
--custom-histogram-buckets --jit-monitor-mode --scheduling-policy --scheduler-cls --ir-op-priority --moe-backend
--linear-backend --sparse-indexer-topk-backend --speculative-config|-sc --spec-method --spec-model
--watermark-config --diffusion-config|-dc --kv-transfer-config --kv-events-config --ec-transfer-config
--ec-manager-config --compilation-config|-cc --attention-config|-ac --engram-config --reasoning-config
--kernel-config --additional-config --structured-outputs-config --aux-output-config --profiler-config
--watchdog-config --optimization-level --performance-mode --weight-transfer-config --gdn-prefill-backend
--kda-prefill-backend --kda-decode-backend --model
""",
    "int": """
--max-log-len --sse-keep-alive-interval --port --grpc-port --data-parallel-supervisor-port
--dp-supervisor-probe-failure-threshold --ssl-cert-reqs --h11-max-incomplete-event-size --h11-max-header-count
--api-server-count|-asc --seed --max-model-len --max-logprobs --renderer-num-workers
--safetensors-prefetch-num-threads --safetensors-prefetch-block-size --mamba-cache-philox-rounds
--pipeline-parallel-size|-pp --master-port --nnodes|-n --node-rank|-r --distributed-timeout-seconds
--cpu-distributed-timeout-seconds --tensor-parallel-size|-tp --decode-context-parallel-size|-dcp
--dcp-kv-cache-interleave-size --cp-kv-cache-interleave-size --prefill-context-parallel-size|-pcp
--data-parallel-size|-dp --data-parallel-rank|-dpn --data-parallel-start-rank|-dpr --data-parallel-size-local|-dpl
--data-parallel-rpc-port|-dpp --ubatch-size --elastic-ep-max-dp-size --dbo-decode-token-threshold
--dp-sync-interval --dbo-prefill-token-threshold --max-parallel-loading-workers --block-size
--kv-cache-memory-bytes --num-gpu-blocks-override --prefix-cache-retention-interval --mamba-block-size
--prefix-match-unit --replayssm-buffer-len --offload-group-size --offload-num-in-group --offload-prefetch-step
--mm-shm-cache-max-object-size-mb --max-loras --max-cpu-loras --max-lora-cls-labels --max-num-batched-tokens
--max-num-scheduled-tokens --max-num-seqs --max-num-active-seqs --max-num-queued-reqs --max-num-queued-tokens
--long-prefill-token-threshold --prefill-schedule-interval --stream-interval --max-cudagraph-capture-size
--spec-tokens --shutdown-timeout
""",
    "float": """
--dp-supervisor-probe-interval-s --dp-supervisor-probe-timeout-s
--gpu-memory-utilization|--device-memory-utilization --kv-offloading-size --cpu-offload-gb --mm-processor-cache-gb
--mm-encoder-fp8-scale-save-margin --video-pruning-rate --mm-ipc-gpu-memory-gb --kv-cache-metrics-sample
--watermark
""",
    "list": """
--lora-modules --api-key --allowed-media-domains --served-model-name --sleep-preserve-parameter-names
--logits-processors --ignore-patterns --numa-bind-nodes --numa-bind-cpus --kv-cache-dtype-skip-layers
--cpu-offload-params --offload-params --lora-target-modules --collect-detailed-traces --cudagraph-capture-sizes
""",
    "optional": """
--hf-token
""",
    "flag": """
--headless --grpc --data-parallel-multi-port-external-lb|-dpm --disable-log-stats --aggregate-engine-logging
""",
    "bool": """
--trust-request-chat-template --trust-request-mm-kwargs --return-tokens-as-token-ids --enable-auto-tool-choice
--exclude-tools-when-tool-choice-none --enable-prompt-tokens-details --enable-per-request-metrics
--enable-server-load-tracking --enable-force-include-usage --enable-tokenizer-info-endpoint --enable-log-outputs
--enable-log-deltas --cohere-is-reasoning-model --log-error-stack --tokens-only --enable-scale-out
--disable-uvicorn-access-log --allow-credentials --enable-ssl-refresh --enable-request-id-headers
--disable-fastapi-docs --enable-offline-docs --enable-flash-late-interaction --trust-remote-code
--allow-deprecated-quantization --enforce-eager --enable-return-routed-experts --return-sampling-mask
--use-fp64-gumbel --enable-trace-replay --disable-sliding-window --disable-cascade-attn --skip-tokenizer-init
--enable-prompt-embeds --enable-sleep-mode --sleep-mode-offload-cudagraph --enable-cumem-allocator
--enable-nccl-comm-suspend --use-tqdm-on-load --enable-mamba-cache-stochastic-rounding --numa-bind
--dcp-q-replicate --data-parallel-hybrid-lb|-dph --data-parallel-external-lb|-dpe --enable-hc-sp
--enable-expert-parallel|-ep --enable-batch-sharded-sampling --enable-ep-weight-filter --enable-dbo
--enable-shm-tensor-arena --enable-elastic-ep --disable-nccl-for-dp-synchronization --enable-eplb
--ray-workers-use-nsight --disable-custom-all-reduce --enable-fault-tolerance --enable-prefix-caching
--kv-sharing-fast-prefill --swa-bounded-replay --enable-mamba-shared-prefix-checkpoint --use-replayssm
--language-model-only --enable-mm-embeds --mm-encoder-only --interleave-mm-strings --skip-mm-profiling
--mm-device-do-normalize --enable-lora --enable-tower-connector-lora --fully-sharded-loras
--specialize-active-lora --enable-mixed-moe-lora-format --enable-moe-shared-loras --kv-cache-metrics
--cudagraph-metrics --enable-layerwise-nvtx-tracing --enable-mfu-metrics --enable-logging-iteration-details
--jit-monitor-verbose --long-prefill-token-threshold-adaptive --enable-chunked-prefill --disable-chunked-mm-input
--scheduler-reserve-full-isl --disable-hybrid-kv-cache-manager --async-scheduling --enable-flashinfer-autotune
--monokernel --fail-on-environ-validation --enable-log-requests
""",
}
# Options whose values argparse restricts (Literal-typed config fields, explicit `choices`).
SERVE_CHOICES = {
    "--chat-template-content-format": "auto openai string",
    "--tool-strict-level": "auto function parameter",
    "--anthropic-disabled-thinking-effort": "auto high low max medium none xhigh",
    "--fingerprint-mode": "custom full hash none",
    "--uvicorn-log-level": "critical debug error info trace warning",
    "--runner": "auto draft generate pooling",
    "--convert": "auto classify embed none",
    "--dtype": "auto bfloat16 float float16 float32 half",
    "--logprobs-mode": "processed_logits processed_logprobs raw_logits raw_logprobs",
    "--safetensors-load-strategy": "eager lazy prefetch torchao",
    "--mamba-ssu-algorithm": "auto horizontal simple vertical",
    "--dcp-comm-backend": "a2a ag_rs",
    "--all2all-backend": (
        "allgather_reducescatter deepep_high_throughput deepep_low_latency deepep_v2 flashinfer_all2allv "
        "flashinfer_nvlink_one_sided flashinfer_nvlink_two_sided moonep mori_high_throughput mori_low_latency "
        "naive nixl_ep pplx"
    ),
    "--expert-placement-strategy": "linear round_robin",
    "--prefix-caching-hash-algo": "sha256 sha256_cbor xxhash xxhash_cbor",
    "--mamba-cache-dtype": "auto bfloat16 float16 float32",
    "--mamba-ssm-cache-dtype": "auto bfloat16 float16 float32",
    "--mamba-cache-mode": "align none",
    "--kv-offloading-backend": "lmcache native",
    "--offload-backend": "auto prefetch uva",
    "--mm-processor-cache-type": "lru shm",
    "--mm-hasher-algorithm": "blake3 sha256 sha512",
    "--mm-encoder-tp-mode": "data weights",
    "--mm-encoder-attn-dtype": "fp8",
    "--video-pruning-method": "evs vidcom2",
    "--mm-tensor-ipc": "direct_rpc torch_shm",
    "--lora-dtype": "auto bfloat16 float16",
    "--per-request-spec-decode-metrics": "detailed none summary",
    "--jit-monitor-mode": "error warn",
    "--scheduling-policy": "fcfs priority",
    "--spec-method": (
        "bailing_hybrid_mtp bailing_hybrid_v3_mtp custom_class deepseek_mtp dflash dots3_note_mtp draft_model "
        "dspark eagle eagle3 ernie_mtp exaone4_5_mtp exaone_moe_mtp extract_hidden_states gemma4_mtp "
        "glm4_moe_lite_mtp glm4_moe_mtp glm5_next_mtp glm_ocr_mtp hy_v3_mtp hy_v4_mtp inkling_mtp kimi_k3_mtp "
        "longcat_flash_mtp mimo_mtp mimo_v2_mtp minimax_m3_mtp mtp nemotron_h_mtp ngram ngram_gpu "
        "pangu_ultra_moe_mtp qwen3_5_mtp qwen3_next_mtp qwen4_exp_mtp step3p5_mtp step5_mtp suffix"
    ),
    "--performance-mode": "balanced interactivity throughput",
    "--gdn-prefill-backend": "flashinfer triton cutedsl aiter_flydsl sycl",
    "--kda-prefill-backend": "auto triton flashkda flashinfer fused",
    "--kda-decode-backend": "auto native flashinfer triton",
}
TOOL_PARSERS = """
apertus beam cohere_command3 cohere_command4 deepseek_v3 deepseek_v31 deepseek_v32 deepseek_v4 deepseek_v41
dots ernie45 functiongemma gemma4 gigachat3 glm45 glm47 granite granite-20b-fc granite4 hermes hf hunyuan_a13b
hy_v3 hy_v4 inkling internlm jamba k2_horizon kimi_k2 kimi_k3 lfm2 ling3 llama3_json llama4_json
llama4_pythonic longcat mimo minicpm5 minimax_m2 minimax_m3 mistral muse muse_glimmer musespark1x olmo3 openai
phi4_mini_json plamo3 poolside_v1 pythonic qwen3_coder qwen3_json qwen3_xml seed_oss step3 step3p5 step5 xlam
""".split()
REASONING_PARSERS = """
beam cohere_command3 cohere_command4 deepseek_r1 deepseek_v3 deepseek_v4 deepseek_v41 ernie45 gemma4 glm45
glm47 granite granite_thinking_parser hf holo2 hunyuan_a13b hy_v3 hy_v4 inkling k2_horizon kimi_k2 kimi_k3
ling3 mimo minicpmv minimax_m2 minimax_m2_append_think minimax_m3 mistral muse muse_glimmer musespark1x
nemotron_v3 olmo3 openai_gptoss plamo3 poolside_v1 qwen3 seed_oss step3 step3p5 step5
""".split()

SUBCOMMANDS = ("chat", "complete", "serve", "launch", "bench", "collect-env", "download-kernels", "preload",
               "run-batch", "snapshot")
SERVE_DESCRIPTION = """Launch a local OpenAI-compatible API server to serve LLM
completions via HTTP. Defaults to Qwen/Qwen3-0.6B if no model is specified.

Search by using: `--help=<ConfigGroup>` to explore options by section (e.g.,
--help=ModelConfig, --help=Frontend)
  Use `--help=all` to show all available flags at once.
"""
# Options typed with vLLM's human-readable integer parsers (engine/arg_utils.py _compute_kwargs).
HUMAN_READABLE_INT_OPTIONS = ("--max-num-batched-tokens", "--max-num-scheduled-tokens", "--kv-cache-memory-bytes",
                              "--safetensors-prefetch-block-size", "--max-num-queued-tokens")
JSON_CONFIG_OPTIONS = {"--kv-transfer-config": "KVTransferConfig", "--compilation-config": "CompilationConfig",
                       "--attention-config": "AttentionConfig", "--kv-events-config": "KVEventsConfig"}
