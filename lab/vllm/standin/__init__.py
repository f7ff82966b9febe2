"""The vLLM stand-in's code, one module per concern; `vllm_standin.py` beside this folder runs it, and README.md
there says what it reproduces and where each module's behaviour comes from in vLLM."""
