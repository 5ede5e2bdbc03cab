"""Client-side metrics: per generator call, per entity, per run; Prometheus and a JSON run log.

Prefill time is taken as the time to first token (queueing included, as a user feels it) and
decode time as the rest. Goodput is the share of generator calls whose time to first token met
the SLA.
"""
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


@dataclass
class LLMCall:
    kind: str                 # recheck / naming
    cached: bool = False      # answered from Redis, no generation
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0

    @property
    def decode_s(self) -> float:
        return self.total_s - self.ttft_s

    @property
    def tpot_s(self) -> float:
        return self.decode_s / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


class ClientMetrics:
    """Counts for one client session; `serve(port)` exposes them for Prometheus."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.calls: list[LLMCall] = []
        self.cache_hits = 0
        self.cache_misses = 0
        self.started = time.perf_counter()
        self._ttft = Histogram("reviewlens_llm_ttft_seconds", "Time to first token of generator calls",
                               ["kind"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._tpot = Histogram("reviewlens_llm_time_per_output_token_seconds", "Decode time per output token",
                               ["kind"], buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64), registry=self.registry)
        self._decode = Histogram("reviewlens_llm_decode_seconds", "Time from first to last token",
                                 ["kind"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._tokens = Counter("reviewlens_llm_tokens", "Generator tokens", ["kind", "direction"],
                               registry=self.registry)
        self._calls = Counter("reviewlens_llm_calls", "Generator calls", ["kind", "outcome"],
                              registry=self.registry)
        self._entities = Counter("reviewlens_entities", "Entities analysed", ["source"], registry=self.registry)
        self.cache_lookups = Counter("reviewlens_cache_lookups", "Redis lookups", ["result"], registry=self.registry)

    def serve(self, port: int, host: str) -> None:
        """Expose the metrics for Prometheus on http://host:port/metrics."""
        start_http_server(port, addr=host, registry=self.registry)

    def llm_call(self, call: LLMCall, sla_ttft_s: float = 0.0) -> None:
        self.calls.append(call)
        if call.cached:
            self._calls.labels(call.kind, "cached").inc()
            return
        self._calls.labels(call.kind, "good" if call.ttft_s < sla_ttft_s else "slow").inc()
        self._ttft.labels(call.kind).observe(call.ttft_s)
        self._decode.labels(call.kind).observe(call.decode_s)
        if call.output_tokens > 1:
            self._tpot.labels(call.kind).observe(call.tpot_s)
        self._tokens.labels(call.kind, "prompt").inc(call.prompt_tokens)
        self._tokens.labels(call.kind, "output").inc(call.output_tokens)

    def entity_done(self, from_cache: bool) -> None:
        self._entities.labels("cache" if from_cache else "analysed").inc()

    def cache_counts(self, hits: int, misses: int) -> None:
        self.cache_hits += hits
        self.cache_misses += misses
        self.cache_lookups.labels("hit").inc(hits)
        self.cache_lookups.labels("miss").inc(misses)

    def summary(self, sla_ttft_s: float) -> dict:
        """Run-level figures: what the CLI prints and the run log ends with."""
        generated = [c for c in self.calls if not c.cached]
        wall = time.perf_counter() - self.started
        output = sum(c.output_tokens for c in generated)
        decode = sum(c.decode_s for c in generated)

        def p50(values):
            return round(sorted(values)[len(values) // 2], 3) if values else None
        return {
            "wall_s": round(wall, 2),
            "llm_calls": len(generated), "llm_calls_cached": len(self.calls) - len(generated),
            "prompt_tokens": sum(c.prompt_tokens for c in generated), "output_tokens": output,
            "ttft_p50_s": p50([c.ttft_s for c in generated]),
            "tpot_p50_s": p50([c.tpot_s for c in generated if c.output_tokens > 1]),
            "prefill_s": round(sum(c.ttft_s for c in generated), 2), "decode_s": round(decode, 2),
            # All output tokens over the run's wall time (calls overlap), and the mean speed of one stream.
            "output_tokens_per_s": round(output / wall, 1) if wall else None,
            "decode_tokens_per_s_per_call": round(output / decode, 1) if decode else None,
            "goodput": round(sum(c.ttft_s < sla_ttft_s for c in generated) / len(generated), 3) if generated else None,
            "sla_ttft_s": sla_ttft_s,
            "cache_hit_ratio": round(self.cache_hits / lookups, 3) if (lookups := self.cache_hits + self.cache_misses) else None,
        }

    def write_log(self, path: Path, results: list[dict], summary: dict) -> None:
        """One JSON line per generator call and per entity, then the run summary."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as log:
            for call in self.calls:
                log.write(json.dumps({"event": "llm_call", **asdict(call)}) + "\n")
            for result in results:
                log.write(json.dumps({"event": "entity", "entity_id": result["entity_id"], **result["metrics"]}) + "\n")
            log.write(json.dumps({"event": "run", **summary}) + "\n")
