"""The server side of a benchmark: a tritonserver of its own, what Triton reports, perf_analyzer.

Figures come from Triton's APIs, never from its log: the inference statistics (per model: requests,
executions, queue and compute time, cache hits), the model-config API (the served parameters) and
the metrics endpoint the generator publishes its engine figures on (local/triton_metrics.py).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import tritonclient.grpc as grpcclient

from reviewlens.build_engines import artifacts
from reviewlens.ensemble import interface as api
from reviewlens.ensemble.tokens import ServingTokenizer
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.local.tritonserver import TritonServer, free_port

PERF_ANALYZER = Path(sys.executable).parent / "perf_analyzer"


def triton(benchmark: str, response_cache: bool = False, only: tuple[api.Model, ...] = ()) -> TritonServer:
    """A tritonserver on free loopback ports, logging to build/triton/perf_<benchmark>_server.log;
    the response cache is off unless asked for (a benchmark must measure computation); `only`
    loads just those models."""
    explicit = ["--model-control-mode=explicit", *(f"--load-model={model.name}" for model in only)] if only else []
    return TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                        response_cache=response_cache, extra_args=explicit,
                        log_path=BUILD_DIR / "triton" / f"perf_{benchmark}_server.log")


def served_file(model: api.Model, file: str) -> Path:
    """A built file a served model reads, where the artifact table puts it in the model repository."""
    artifact = next(a for a in artifacts.served("cpu") if a.model == model.name and a.file == file)
    return MODEL_REPOSITORY / artifact.served_path


def served_tokenizer(tokenizer: api.Model) -> ServingTokenizer:
    """A tokenizer step's tokenization (max_length, pad id), from its files in the model repository."""
    return ServingTokenizer(served_file(tokenizer, "tokenizer.json").parent)


def server_version(url: str) -> str:
    with grpcclient.InferenceServerClient(url) as client:
        return client.get_server_metadata(as_json=True)["version"]


def model_parameters(url: str, model: api.Model) -> dict[str, str]:
    """A served model's config parameters and max_batch_size, from Triton's model-config API."""
    with grpcclient.InferenceServerClient(url) as client:
        config = client.get_model_config(model.name, as_json=True)["config"]
    parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
    return {**parameters, "max_batch_size": str(config.get("max_batch_size", 0))}


def inference_counters(url: str) -> dict[str, dict[str, int]]:
    """Cumulative per-model counters from Triton's inference statistics."""
    with grpcclient.InferenceServerClient(url) as client:
        statistics = client.get_inference_statistics(model_name="", as_json=True)["model_stats"]
    counters = {}
    for stats in statistics:
        summary = stats["inference_stats"]
        # batch_stats count each execution once; inference_stats count it once per request in it.
        compute_ns = sum(int(batch[step].get("ns", 0)) for batch in stats.get("batch_stats", [])
                         for step in ("compute_input", "compute_infer", "compute_output"))
        counters[stats["name"]] = {
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
            "requests": int(summary["success"].get("count", 0)),
            "failures": int(summary["fail"].get("count", 0)),
            "queue_ns": int(summary["queue"].get("ns", 0)),
            "compute_ns": compute_ns,
            "cache_hits": int(summary["cache_hit"].get("count", 0)),
        }
    return counters


def breakdown(before: dict, after: dict, wall_s: float) -> dict[str, dict]:
    """Per model, between two counter readings: rows per execution, queue wait, compute, share of wall time busy."""
    figures = {}
    for name, end in after.items():
        delta = {key: end[key] - before.get(name, {}).get(key, 0) for key in end}
        if not delta["inferences"]:
            continue
        figures[name] = {
            "inferences": delta["inferences"],
            "executions": delta["executions"],
            "cache_hits": delta["cache_hits"],
            "failures": delta["failures"],
            "rows_per_execution": round(delta["inferences"] / max(delta["executions"], 1), 2),
            "queue_ms_per_request": round(delta["queue_ns"] / max(delta["requests"], 1) / 1e6, 3),
            "compute_ms_per_execution": round(delta["compute_ns"] / max(delta["executions"], 1) / 1e6, 3),
            "compute_ms_per_text": round(delta["compute_ns"] / delta["inferences"] / 1e6, 3),
            "busy_fraction": round(delta["compute_ns"] / 1e9 / wall_s, 3),
        }
    return figures


def perf_analyzer(arguments: list[str], work: Path, timeout_s: float) -> tuple[int, str]:
    """Run perf_analyzer (from tritonclient[all]); its exit code and console output, headed by the
    command, with the temporary folder `work` written as <tmp> so the output can be committed."""
    # perf_analyzer links libcudart.so.12 even on the CPU; it comes from nvidia-cuda-runtime-cu12.
    cuda_runtime = Path(importlib.util.find_spec("nvidia.cuda_runtime").submodule_search_locations[0]) / "lib"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(cuda_runtime), env.get("LD_LIBRARY_PATH")]))
    try:
        run = subprocess.run([str(PERF_ANALYZER), *arguments], capture_output=True, text=True, env=env,
                             timeout=timeout_s)
        code, output = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired as err:
        code, output = -1, f"timed out after {timeout_s:.0f} s\n{(err.stdout or b'').decode(errors='replace')}"
    console = f"$ perf_analyzer {' '.join(arguments)}\n{output}"
    return code, console.replace(str(work), "<tmp>")
