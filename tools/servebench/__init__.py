"""servebench: what a vLLM node or fleet sustains, measured as `vllm bench serve` defines it.

A concurrency (or request-rate) sweep with repeated runs, streamed responses timed per chunk, and reports in
the vendor guide's table shape. Run `python3 -m tools.servebench --help` from the repository root, or
`python3 -m servebench --help` with `tools/` on PYTHONPATH.
"""
