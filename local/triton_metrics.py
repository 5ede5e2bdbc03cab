"""Read a Triton server's metrics endpoint (Prometheus text format, parsed by prometheus_client).

The served models publish their figures there (the generator's are in
ensemble/interface.py's GENERATOR_METRICS); tests and benchmarks take a scrape before and after
what they measure and read the difference:

    before = scrape(metrics_url(server.host, server.metrics_port))
    ...
    figures = delta(before, scrape(url))
    figures.value(interface.GENERATOR_REQUESTS.name, finish_reason="cancelled")
    figures.mean(interface.GENERATOR_QUEUE_SECONDS.name)
"""
import math
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


def metrics_url(host: str, metrics_port: int) -> str:
    """Where a tritonserver started with --metrics-address=host --metrics-port=metrics_port serves its metrics."""
    return f"http://{host}:{metrics_port}/metrics"


@dataclass(frozen=True)
class Metrics:
    """The samples of one scrape (or the difference of two), by sample name and labels.

    A histogram `h` appears as its samples `h_bucket` (label `le`), `h_sum` and `h_count`."""
    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels`; KeyError if there is none."""
        wanted = set(labels.items())
        found = [value for (sample, have), value in self.samples.items() if sample == name and wanted <= have]
        if not found:
            raise KeyError(f"no sample {name}{{{', '.join(f'{k}={v!r}' for k, v in labels.items())}}} "
                           "on the metrics endpoint")
        return sum(found)

    def mean(self, histogram: str, **labels: str) -> float:
        """A histogram's mean observation (nan if it observed nothing)."""
        count = self.value(f"{histogram}_count", **labels)
        return self.value(f"{histogram}_sum", **labels) / count if count else math.nan


def parse(text: str) -> Metrics:
    """The samples of a Prometheus text exposition."""
    return Metrics({(sample.name, frozenset(sample.labels.items())): sample.value
                    for family in text_string_to_metric_families(text) for sample in family.samples})


def scrape(url: str, timeout: float = 10.0) -> Metrics:
    """Fetch and parse a metrics endpoint."""
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return parse(reply.read().decode("utf-8"))


def delta(before: Metrics, after: Metrics) -> Metrics:
    """What changed between two scrapes: after - before per sample (a sample new in `after` counts from 0).

    Meaningful for counters and histograms, which only grow while the server runs."""
    return Metrics({key: value - before.samples.get(key, 0.0) for key, value in after.samples.items()})
