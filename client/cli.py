"""`reviewlens`: analyse review files against running Triton servers, or warm the cache.

    reviewlens analyze reviews.jsonl [--url HOST:PORT ...] [--redis URL | --no-cache] [--json] [--out FILE]
    reviewlens precompute reviews.jsonl --top 20
    reviewlens precompute reviews.parquet --top 100000 --ray auto --out results.parquet   # on a Ray cluster
    reviewlens adapt reviews.jsonl [--url HOST:PORT]   # the classifier adapted to these reviews, as a new version
    reviewlens rollback                                # back to the previous classifier version

Input: JSON lines with `entity_id`, `text` and optionally `entity_name` (with --ray, also Parquet
with those columns). Settings not given as
flags come from REVIEWLENS_* environment variables (see client/settings.py), then defaults.
Each run writes a JSON-lines log and an HTML report into --run-dir.
"""
import asyncio
import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from tritonclient.utils import InferenceServerException

from reviewlens.client import report
from reviewlens.client.analysis import Analyzer, EntityAnalysis
from reviewlens.client.metrics import ClientMetrics, LLMCall
from reviewlens.client.reviews_file import InputError, read_entities
from reviewlens.client.settings import Settings
from reviewlens.client.transport import ServersUnavailable

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines, for logs and grep

URLS = typer.Option(None, "--url", help="Triton gRPC endpoint HOST:PORT; repeat for several servers (load is spread, dead ones skipped).")
REDIS = typer.Option(None, "--redis", help="Redis URL for the cache: redis://127.0.0.1:6379/0, or a Redis Cluster as "
                     "redis+cluster://host:port[,host:port...].")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write Redis.")
TOP_K = typer.Option(None, "--top-k", help="Representative reviews per polarity (default 20).")
CONCURRENCY = typer.Option(None, "--concurrency", help="Entities analysed at the same time (default 4).")
RECHECK = typer.Option(None, "--recheck-below", help="Re-check reviews whose classifier confidence is below this (or with a contrast word) with the generator; 0, the default, turns re-checks off (0.8 is the measured setting).")
KIND = typer.Option(None, "--kind", help='What the entities are, as prompts name them (default "movie").')
RUN_DIR = typer.Option(Path("build/runs"), "--run-dir", help="Where each run's log and HTML report go.")
METRICS_PORT = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port while running.")


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _settings(urls, redis, no_cache, top_k, concurrency, recheck_below, kind) -> Settings:
    try:
        settings = Settings.from_env(urls=tuple(urls) if urls else None, redis_url=redis, top_k=top_k,
                                     concurrency=concurrency, recheck_below=recheck_below, entity_kind=kind)
        return (replace(settings, redis_url=None) if no_cache else settings).validate()
    except ValueError as error:
        _fail(str(error), 2)


async def _run(settings: Settings, entities, metrics_port, quiet: bool) -> tuple[list[EntityAnalysis], ClientMetrics]:
    metrics = ClientMetrics()
    if metrics_port:
        metrics.serve(metrics_port, settings.metrics_host)
    async with Analyzer(settings, metrics) as analyzer:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=quiet) as progress:
            task = progress.add_task("analysing entities", total=len(entities))
            results = await analyzer.analyze_many(entities, on_done=lambda _: progress.advance(task))
    return results, metrics


@contextmanager
def _reported_failures():
    """A failure to reach or use the servers, or a refused setting, as one line and an exit code."""
    try:
        yield
    except ServersUnavailable as error:
        _fail(f"{error}. Is tritonserver running (`make serve`)?", 1)
    except InferenceServerException as error:
        _fail(f"Triton answered: {error.message()}", 1)
    except grpc.RpcError as error:  # a streamed generation's failure, e.g. its deadline (deadline_s)
        _fail(f"Triton call failed: {error.code().name}: {error.details()}", 1)
    except ValueError as error:
        _fail(str(error), 2)


def _most_reviewed(entities, top: int | None):
    return entities if top is None else sorted(entities, key=lambda e: (-len(e.reviews), e.entity_id))[:top]


def _analyse(path: Path, settings: Settings, metrics_port, quiet: bool, top: int | None = None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        entities = _most_reviewed(read_entities(path), top)
    except InputError as error:
        _fail(str(error), 2)
    with _reported_failures():
        return asyncio.run(_run(settings, entities, metrics_port, quiet))


def _write_run(run_dir: Path, results: list[EntityAnalysis], metrics: ClientMetrics, settings: Settings,
               title: str) -> dict:
    # Milliseconds: a warm rerun can finish within the second of the run before it.
    directory = run_dir / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    summary = metrics.summary(settings.sla_ttft_s)
    records = [r.to_json() for r in results]
    metrics.write_log(directory / "run.jsonl", records, summary)
    calls = [dict(kind=c.kind, cached=c.cached, prompt_tokens=c.prompt_tokens, ttft_s=c.ttft_s) for c in metrics.calls]
    (directory / "report.html").write_text(report.render(records, summary, calls, title), encoding="utf-8")
    err.print(f"run log and report: {directory}/run.jsonl, {directory}/report.html", highlight=False)
    return summary


TABLE_ASPECTS = 3  # aspects per polarity in the table; the HTML report and --json have all of them


def _aspect_lines(result: dict, polarity: str, style: str) -> Text:
    """The most-mentioned aspects of one polarity with their review counts and shares, then a quote of the first."""
    aspects = [a for a in result["aspects"] if a["polarity"] == polarity]
    if not aspects:
        return Text("none", style="dim")
    lines = Text()
    for aspect in aspects[:TABLE_ASPECTS]:
        lines.append(aspect["name"], style=style).append(f" {aspect['reviews']} ({round(aspect['share'] * 100)} %)\n")
    if len(aspects) > TABLE_ASPECTS:
        lines.append(f"+{len(aspects) - TABLE_ASPECTS} more\n", style="dim")
    quote = aspects[0]["evidence"][0]
    lines.append(f"\u201c{quote['text']}\u201d", style="italic").append(f" review {quote['review'] + 1}", style="dim")
    return lines


def _comparison_lines(result: dict) -> Text:
    """Strengths and weaknesses with their figures, or why there are none."""
    if not result["comparison"]["rivals"]:
        return Text(result["comparison"]["note"] or "", style="dim")
    lines = [Text(f"+ {item['text']}", style="green") for item in result["strengths"]]
    lines += [Text(f"- {item['text']}", style="red") for item in result["weaknesses"]]
    return Text("\n").join(lines) if lines else Text("none clearly above or below the others", style="dim")


def _table(results: list[EntityAnalysis]) -> Table:
    table = Table(show_lines=True)
    for column in ("entity", "reviews", "positive", "praised: reviews (share)", "criticised: reviews (share)",
                   "summary", "strengths / weaknesses"):
        table.add_column(column, justify="right" if column in ("reviews", "positive") else "left")
    for r in (result.to_json() for result in results):
        # Text objects, not strings: names and quotes are user text, and a "[...]" in them is not Rich markup.
        table.add_row(Text(r["entity_name"] or r["entity_id"]), str(len(r["reviews"])),
                      f"{round(r['sentiment_ratio']['positive'] * 100)} %",
                      _aspect_lines(r, "positive", "green"), _aspect_lines(r, "negative", "red"),
                      Text(r["summary"]), _comparison_lines(r))
    return table


@app.command()
def analyze(path: Path = typer.Argument(..., help="reviews.jsonl: entity_id, text, optional entity_name per line."),
            url: list[str] = URLS, redis: str = REDIS, no_cache: bool = NO_CACHE, top_k: int = TOP_K,
            concurrency: int = CONCURRENCY, recheck_below: float = RECHECK, kind: str = KIND,
            as_json: bool = typer.Option(False, "--json", help="Print one JSON result per entity instead of the table."),
            out: Path = typer.Option(None, "--out", help="Also write the JSON results (one line per entity) here."),
            run_dir: Path = RUN_DIR, metrics_port: int = METRICS_PORT):
    """Analyse every entity of the file: sentiment, representative reviews, summary, strengths."""
    settings = _settings(url, redis, no_cache, top_k, concurrency, recheck_below, kind)
    results, metrics = _analyse(path, settings, metrics_port, quiet=False)
    lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in results]
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if as_json:
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        # Rich assumes 80 columns when the output is not a terminal (CI logs, files): too narrow for aspects.
        Console(width=None if sys.stdout.isatty() else 140).print(_table(results))
    summary = _write_run(run_dir, results, metrics, settings, f"Review analysis of {path.name}")
    err.print(" · ".join(f"{k} {v}" for k, v in summary.items() if v is not None), highlight=False)


def _progress_lines(total: int):
    """on_entity for the Ray job: a line per twentieth of the entities, and one per failed entity."""
    every, done, failed, started = max(1, total // 20), 0, 0, time.monotonic()

    def on_entity(entity_id: str, error: str | None) -> None:
        nonlocal done, failed
        done, failed = done + 1, failed + (error is not None)
        if error is not None:
            err.print(f"entity {entity_id!r} failed after its retries: {error}", highlight=False)
        if done % every == 0 or done == total:
            err.print(f"precompute: {done}/{total} entities ({failed} failed), {time.monotonic() - started:.0f} s",
                      highlight=False)
    return on_entity


def _precompute_on_ray(path: Path, top: int, settings: Settings, address: str, out: Path, run_dir: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import ray
        from reviewlens.client import ray_job
    except ModuleNotFoundError as error:  # the client alone has no Ray
        _fail(f"--ray needs Ray and pyarrow ({error.msg}): pip install 'reviewlens[scale]'", 2)
    try:
        entities = _most_reviewed(ray_job.read_reviews(path), top)
    except InputError as error:
        _fail(str(error), 2)
    metrics = ClientMetrics()  # the run's figures, from each entity's own (the actors' sessions end with them)
    try:
        ray.init(address=address)
    except ConnectionError as error:
        _fail(f"cannot join the Ray cluster at {address!r}: {error}", 1)
    try:
        with _reported_failures():
            run = ray_job.precompute_on_ray(entities, settings, on_entity=_progress_lines(len(entities)))
    finally:
        ray.shutdown()
    ray_job.write_results(run.results, out)
    for result in run.results:
        metrics.entity_done(bool(result.metrics.get("from_cache")))
        for call in result.metrics.get("llm", []):
            metrics.llm_call(LLMCall(**call), settings.sla_ttft_s)
    _write_run(run_dir, run.results, metrics, settings, f"Pre-computation of {path.name} on Ray")
    cached = sum(bool(r.metrics.get("from_cache")) for r in run.results)
    print(f"precomputed {len(run.results)} entities on Ray: {len(run.results) - cached} analysed, {cached} already "
          f"cached, {len(run.failed)} failed; results in {out}")
    if run.recomputed:
        err.print(f"{len(run.recomputed)} entities were not in the cache after their actor finished and were "
                  f"analysed again on the driver: {', '.join(run.recomputed)}", highlight=False)
    if run.failed:
        _fail(f"{len(run.failed)} entities failed after their retries: {', '.join(run.failed)}", 1)


@app.command()
def precompute(path: Path = typer.Argument(..., help="reviews.jsonl: entity_id, text, optional entity_name per line "
                                           "(with --ray also a .parquet file with those columns)."),
               top: int = typer.Option(20, "--top", min=1, help="Analyse the N entities with the most reviews."),
               url: list[str] = URLS, redis: str = REDIS, top_k: int = TOP_K, concurrency: int = CONCURRENCY,
               recheck_below: float = RECHECK, kind: str = KIND, run_dir: Path = RUN_DIR,
               metrics_port: int = METRICS_PORT,
               ray_address: str = typer.Option(
                   None, "--ray", help="Run on a Ray cluster: its address as ray.init takes it (\"auto\" joins the "
                   "local node's cluster, \"local\" starts one here, or host:port). One actor per --url, each "
                   "analysing --concurrency entities at a time; needs Redis and the scale extra."),
               out: Path = typer.Option(Path("build/precompute/results.parquet"), "--out",
                                        help="With --ray: the results as Parquet, one row per entity (entity_id, result JSON).")):
    """Warm the Redis cache with the results of the most-reviewed entities (for cron; idempotent:
    entities whose reviews did not change are served from the cache, nothing is recomputed)."""
    settings = _settings(url, redis, False, top_k, concurrency, recheck_below, kind)
    if ray_address is not None:
        if metrics_port:
            _fail("--metrics-port is not served with --ray: each actor has its own session; the run log has the figures", 2)
        _precompute_on_ray(path, top, settings, ray_address, out, run_dir)
        return
    results, metrics = _analyse(path, settings, metrics_port, quiet=not sys.stderr.isatty(), top=top)
    cached = sum(bool(r.metrics.get("from_cache")) for r in results)
    _write_run(run_dir, results, metrics, settings, f"Pre-computation of {path.name}")
    print(f"precomputed {len(results)} entities: {len(results) - cached} analysed, {cached} already cached")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def adapt(ctx: typer.Context):
    """Adapt the sentiment classifier to a reviews file: the generator labels a sample of its texts,
    the classifier is fine-tuned, quantized, gated and installed as a new version (needs the build
    environment; `reviewlens adapt --help` lists the options)."""
    from reviewlens.build_engines import adapt as adaptation  # torch and the build: only for this command

    raise typer.Exit(adaptation.main(ctx.args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def rollback(ctx: typer.Context):
    """Remove the newest classifier version from the model repository (kept aside), restoring the previous one."""
    from reviewlens.build_engines import versions

    raise typer.Exit(versions.main(["rollback", *ctx.args]))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
