"""What every benchmark in perf/ shares, so that each bench_*.py holds only its own measurement.

    load      closed-loop load over a callable (per-request latency); the CPU share other processes took
    results   machine facts, the JSON + markdown + PNG writer (repo-relative paths only), the command line
    server    tritonserver for a benchmark, Triton's inference statistics and model configs, perf_analyzer
    baselines the in-process reference models (transformers, sentence-transformers) and the sample reviews
"""
