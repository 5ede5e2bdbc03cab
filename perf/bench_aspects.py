"""Quality of the aspects the client mines, names and compares, and the cost of mining them at scale.

    python perf/bench_aspects.py [--entities 20] [--reviews-per-entity 35] [--quick]

On the best-covered movies of the held-out split, analysed by the client (client/analysis.py)
through a real tritonserver of its own (response cache off, so nothing is served from an earlier
answer) in one `analyze_many` call, as a user would:
  - grounding: share of evidence quotes (aspects', strengths' and weaknesses') equal to their
    review's text at their offsets (must be 100 %);
  - polarity: share of evidence sentences whose served label (sent to `sentiment` again) is their
    aspect's polarity (true by construction), and share whose review the critics rated the same
    way (fresh = positive, rotten = negative): the figure that can fail;
  - names: share of at most 4 words; share that copy a 4-word span of a review
    (client.aspects.copies_review_span); who named them (generator or key-phrase fallback) and why
    the generator's proposals were refused (its raw answers, read back from Redis); duplicates per entity;
  - coverage: share of the opinion sentences inside a reported aspect (result.metrics);
  - stability: the same call again, in a new session without Redis, must give the same aspects
    (names, counts, evidence) and summary;
  - strengths and weaknesses per entity (computed against the other movies of the call).
The 4 demo movies (best_covered_movies(4), as `make demo` analyses them) are analysed by the
client of commit OLD_CLIENT (its summary lists and free-text strengths; its client/ from `git
archive`, imported in a subprocess in place of today's) and by today's, on the same server, into
aspects_side_by_side.md for a person to judge.
Scale: aspect mining alone (client.aspects.clusters_of) on synthetic entities of up to 20,000
reviews made from the real sentences of these movies (their served labels and embeddings, each
copy with Gaussian noise of MINING_NOISE per dimension, renormalised), each size in a fresh process
(time, peak RSS growth, peak traced allocations).
Writes aspects.json, .md, .png and aspects_side_by_side.md to perf/results/ (build/perf-smoke/ with --quick).
"""
import json
import multiprocessing
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import redis

from harness import results
from harness.baselines import best_covered_entities, critics_labels
from harness.server import server_version, triton
from reviewlens.client import aspects, prompts, sentences
from reviewlens.client.analysis import Entity, EntityAnalysis
from reviewlens.client.aspects import Sentence
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer, SyncClient
from reviewlens.local.paths import REPO_ROOT
from reviewlens.local.redis_server import RedisServer
from reviewlens.local.sample_data import HELD_OUT
from reviewlens.local.tritonserver import free_port

FULL_REVIEWS = 35
DEMO_MOVIES = 4  # what `make demo` analyses (local/demo.py)
# The last commit whose client wrote free-text summary lists and strengths (result schema v2).
OLD_CLIENT = "1a65cfe"
TARGETS = {"grounding": 1.0, "served_polarity": 0.95, "short_names": 1.0, "copied_names": 0.05, "coverage": 0.60}
MINING_SIZES = (1250, 2500, 5000, 10000, 20000)  # reviews per synthetic entity
MINING_NOISE = 0.01
# Runs the old client in a process of its own: `reviewlens.client` and its submodules are imported
# from the given folder (the old client/), everything else (ensemble, local) from this checkout.
OLD_CLIENT_RUNNER = """
import importlib.abc, importlib.machinery, json, sys
from pathlib import Path
old = Path(sys.argv[1])

class OldClient(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "reviewlens.client":
            return importlib.machinery.PathFinder.find_spec(name, [str(old.parent)])
        if name.startswith("reviewlens.client."):
            return importlib.machinery.PathFinder.find_spec(name, [str(old)])
        return None

sys.meta_path.insert(0, OldClient())
from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
import reviewlens.client.analysis as analysis
assert Path(analysis.__file__).parent == old, analysis.__file__
entities = [Entity(**e) for e in json.load(sys.stdin)]
with SyncAnalyzer(Settings(urls=(sys.argv[2],), redis_url=None)) as analyzer:
    print(json.dumps([r.to_json() for r in analyzer.analyze_many(entities)]))
"""


def old_client_results(entities: list[Entity], url: str) -> tuple[list[dict], str]:
    """The entities analysed by commit OLD_CLIENT's client against the server at `url` (no Redis),
    and that commit's full id."""
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", OLD_CLIENT], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, "client"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        run = subprocess.run([sys.executable, "-c", OLD_CLIENT_RUNNER, str(Path(folder) / "client"), url],
                             input=json.dumps([asdict(e) for e in entities]), capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"the old client failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.splitlines()[-1]), commit


def analyse(entities: list[Entity], settings: Settings) -> tuple[list[EntityAnalysis], float]:
    with SyncAnalyzer(settings) as analyzer:
        started = time.perf_counter()
        analysed = analyzer.analyze_many(entities)
        return analysed, round(time.perf_counter() - started, 2)


def naming_answers(url: str) -> list[dict]:
    """The generator's naming answers held in Redis (the client caches every generator answer)."""
    store = redis.Redis.from_url(url)
    answers = [json.loads(store.get(key)) for key in store.scan_iter(match="rl:*:llm:*", count=1000)]
    store.close()
    return [a for a in answers if isinstance(a, dict) and "names" in a]


def naming_answer_of(result: EntityAnalysis, answers: list[dict]) -> dict | None:
    """The naming answer behind a result: its summary starts with the result's (which keeps whole
    sentences only) and its names are the result's wherever the generator's name was kept."""
    for answer in answers:
        names = [" ".join(name.split()) for name in answer["names"]]
        if (len(names) == len(result.aspects) and answer["summary"].strip().startswith(result.summary)
                and all(a.name == name for a, name in zip(result.aspects, names) if a.named_by == "generator")):
            return answer
    return None


def mined_view(result: EntityAnalysis) -> list[tuple]:
    """What the encoders and the clustering decide: each aspect's polarity, counts and evidence."""
    return [(a.polarity, a.mentions, a.reviews, a.share, [(q.review, q.start, q.end, q.text) for q in a.evidence])
            for a in result.aspects]


def named_view(result: EntityAnalysis) -> list[tuple]:
    """What the generator decides: each aspect's name and who gave it."""
    return [(a.name, a.named_by) for a in result.aspects]


def quality(entities: list[Entity], first: list[EntityAnalysis], second: list[EntityAnalysis],
            proposals: list[dict], served_labels: dict[str, str]) -> dict:
    """Every quality figure, per entity and in total."""
    critics = critics_labels(entities)
    rows, refusals = [], Counter()
    for entity, result, again in zip(entities, first, second, strict=True):
        texts = entity.reviews
        evidence = [(a.polarity, q) for a in result.aspects for q in a.evidence]
        contrast_quotes = [q for c in [*result.strengths, *result.weaknesses] for q in c.evidence]
        grounded = sum(texts[q.review][q.start:q.end] == q.text for _, q in evidence)
        grounded += sum(texts[q.review][q.start:q.end] == q.text for q in contrast_quotes)
        keys = [" ".join(aspects.words(a.name)) for a in result.aspects]
        answer = naming_answer_of(result, proposals) if result.aspects else None
        proposed = [" ".join(name.split()) for name in answer["names"]] if answer else []
        taken: set[str] = set()
        raw_copies = 0
        for name, aspect, key in zip(proposed, result.aspects, keys):
            problem = aspects.name_problem(name, texts, taken)
            refusals[problem or "accepted"] += 1
            raw_copies += aspects.copies_review_span(aspects.words(name), texts)
            taken.add(key)
        m = result.metrics
        rows.append({
            "entity_id": entity.entity_id, "reviews": len(texts), "sentences": m["sentences"],
            "opinion_sentences": m["opinion_sentences"], "in_aspects": m["in_aspects"],
            "aspects_positive": sum(a.polarity == "positive" for a in result.aspects),
            "aspects_negative": sum(a.polarity == "negative" for a in result.aspects),
            "quotes": len(evidence) + len(contrast_quotes), "grounded": grounded,
            "served_polarity": sum(served_labels[q.text] == polarity for polarity, q in evidence),
            "critics_polarity": sum(critics[entity.entity_id][q.review] == polarity for polarity, q in evidence),
            "evidence": len(evidence),
            "names": len(keys), "short_names": sum(len(a.name.split()) <= aspects.MAX_NAME_WORDS for a in result.aspects),
            "copied_names": sum(aspects.copies_review_span(aspects.words(a.name), texts) for a in result.aspects),
            "duplicate_names": len(keys) - len(set(keys)),
            "named_by_generator": sum(a.named_by == "generator" for a in result.aspects),
            "named": bool(result.aspects), "answer_found": answer is not None,
            "proposals": len(proposed), "proposals_copied": raw_copies,
            "strengths": len(result.strengths), "weaknesses": len(result.weaknesses),
            "stable_mined": mined_view(result) == mined_view(again), "stable_names": named_view(result) == named_view(again),
            "stable_summary": result.summary == again.summary,
            "summary_whole": bool(re.search(r"[.!?]$", result.summary.strip())),
        })
    total = Counter()
    for row in rows:
        total.update({k: v for k, v in row.items() if isinstance(v, (int, bool)) and k != "reviews"})

    def share(part: str, whole: str) -> float | None:
        return round(total[part] / total[whole], 4) if total[whole] else None
    figures = {
        "grounding": share("grounded", "quotes"), "served_polarity": share("served_polarity", "evidence"),
        "critics_polarity": share("critics_polarity", "evidence"), "short_names": share("short_names", "names"),
        "copied_names": share("copied_names", "names"), "proposals_copied": share("proposals_copied", "proposals"),
        "named_by_generator": share("named_by_generator", "names"), "coverage": share("in_aspects", "opinion_sentences"),
        "duplicate_names": total["duplicate_names"], "stable_entities": sum(r["stable_mined"] and r["stable_names"] for r in rows),
        "stable_mined": total["stable_mined"], "stable_names": total["stable_names"],
        "stable_summaries": total["stable_summary"], "entities": len(rows),
        "whole_summaries": total["summary_whole"], "summary_characters": prompts.SUMMARY_CHARACTERS,
        "refusals": dict(refusals), "naming_answers_found": total["answer_found"], "entities_named": total["named"], **{k: total[k] for k in ("quotes", "evidence", "names", "proposals", "strengths",
                                                              "weaknesses", "opinion_sentences", "in_aspects")},
        "entities_with_strengths": sum(r["strengths"] > 0 for r in rows),
        "entities_with_weaknesses": sum(r["weaknesses"] > 0 for r in rows),
    }
    return {"figures": figures, "rows": rows}


def targets(figures: dict) -> dict:
    """Each target with its measured value and verdict."""
    f, t = figures, TARGETS
    return {
        "grounding": {"name": "evidence quotes equal their review's text at their offsets", "target": "100 %",
                      "value": f["grounding"], "met": f["grounding"] == t["grounding"]},
        "served_polarity": {"name": "evidence sentences whose served label is their aspect's polarity", "target": ">= 95 %",
                            "value": f["served_polarity"], "met": f["served_polarity"] >= t["served_polarity"]},
        "critics_polarity": {"name": "evidence sentences whose review the critics rated as the aspect's polarity",
                             "target": "reported", "value": f["critics_polarity"], "met": None},
        "short_names": {"name": "names of at most 4 words", "target": "100 %", "value": f["short_names"],
                        "met": f["short_names"] == t["short_names"]},
        "copied_names": {"name": "names copying a 4-word span of a review", "target": "<= 5 %",
                         "value": f["copied_names"], "met": f["copied_names"] <= t["copied_names"]},
        "duplicate_names": {"name": "duplicate names within an entity", "target": "0", "value": f["duplicate_names"],
                            "met": f["duplicate_names"] == 0},
        "coverage": {"name": "opinion sentences inside a reported aspect", "target": "aim >= 60 %", "value": f["coverage"],
                     "met": f["coverage"] >= t["coverage"]},
        "stability": {"name": "same aspects (names, counts, evidence) on a second run without Redis", "target": "all entities",
                      "value": f"{f['stable_entities']} of {f['entities']}", "met": f["stable_entities"] == f["entities"]},
        "stable_mined": {"name": "of which the same counts and evidence (encoders and clustering)", "target": "all entities",
                         "value": f"{f['stable_mined']} of {f['entities']}", "met": f["stable_mined"] == f["entities"]},
        "stable_names": {"name": "of which the same names (generator)", "target": "all entities",
                         "value": f"{f['stable_names']} of {f['entities']}", "met": f["stable_names"] == f["entities"]},
    }


def served_sentence_data(entities: list[Entity], url: str) -> dict:
    """Every sentence of the entities with its served label, confidence and embedding."""
    found = [(n, i, span) for n, e in enumerate(entities) for i, text in enumerate(e.reviews) for span in sentences.split(text)]
    texts = [entities[n].reviews[i][span.start:span.end] for n, i, span in found]
    with SyncClient(url) as client:
        classified, embedded = client.sentiment(texts), client.embed(texts)
    review_ids = {}
    return {"review": np.array([review_ids.setdefault((n, i), len(review_ids)) for n, i, _ in found]),
            "start": np.array([span.start for _, _, span in found]), "end": np.array([span.end for _, _, span in found]),
            "text": np.array(texts, dtype=object), "label": np.array([c.label for c in classified]),
            "confidence": np.array([c.confidence for c in classified]), "embedding": np.asarray(embedded, np.float32)}


def mine_synthetic(path: str, n_reviews: int, settings: Settings, seed: int = 0) -> dict:
    """In a fresh process: a synthetic entity of n_reviews reviews cycled from the real ones
    (their sentences, labels and noisy embeddings), then clusters_of on it alone, measured."""
    real = np.load(path, allow_pickle=True)
    real_reviews = int(real["review"].max()) + 1
    by_review = [np.flatnonzero(real["review"] == r) for r in range(real_reviews)]
    rows = np.concatenate([by_review[r % real_reviews] for r in range(n_reviews)])
    review_of = np.concatenate([np.full(len(by_review[r % real_reviews]), r) for r in range(n_reviews)])
    rng = np.random.default_rng(seed)
    embeddings = real["embedding"][rows] + rng.normal(scale=MINING_NOISE, size=(len(rows), real["embedding"].shape[1]))
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    found = [Sentence(int(r), int(real["start"][j]), int(real["end"][j]), str(real["text"][j]), str(real["label"][j]),
                      float(real["confidence"][j])) for r, j in zip(review_of, rows)]
    del real, by_review
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    clusters = aspects.clusters_of(found, embeddings, n_reviews, min_confidence=settings.opinion_confidence,
                                   min_share=settings.min_aspect_share, max_aspects=settings.max_aspects,
                                   evidence=settings.evidence_quotes, mmr_lambda=settings.mmr_lambda)
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"reviews": n_reviews, "sentences": len(found),
            "opinion_sentences": sum(aspects.is_opinion(s, settings.opinion_confidence) for s in found),
            "seconds": round(seconds, 3), "peak_rss_growth_mib": round((after_kib - before_kib) / 1024, 1),
            "peak_traced_mib": round(traced_peak / 2**20, 1), "aspects": len(clusters),
            "in_aspects": sum(len(c.members) for c in clusters)}


def mining_scale(data: dict, sizes: tuple[int, ...], settings: Settings) -> list[dict]:
    """mine_synthetic for each size, each in a process of its own (so its peak RSS is its own)."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "sentences.npz")
        np.savez(path, **data)
        rows = []
        for size in sizes:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
                rows.append(process.submit(mine_synthetic, path, size, settings).result())
            print(f"  mining {size} reviews: {rows[-1]['seconds']:.1f} s, +{rows[-1]['peak_rss_growth_mib']} MiB RSS",
                  flush=True)
    return rows


def measure(args, out) -> dict:
    if args.quick:
        args.entities, args.reviews_per_entity = 3, 10
    sizes = (500, 1000, 2000) if args.quick else MINING_SIZES
    settings = Settings()
    entities = best_covered_entities(args.entities, args.reviews_per_entity)
    demo = best_covered_entities(DEMO_MOVIES, args.reviews_per_entity)
    print(f"{len(entities)} entities, {sum(len(e.reviews) for e in entities)} reviews", flush=True)
    starting = time.perf_counter()
    with triton("aspects", response_cache=False) as server, RedisServer(free_port()) as cache_server:
        startup_s = time.perf_counter() - starting
        settings = replace(settings, urls=(server.grpc_url,), redis_url=cache_server.url)
        print("first run (empty Redis) ...", flush=True)
        first, first_s = analyse(entities, settings)
        proposals = naming_answers(cache_server.url)
        print("second run (no Redis) ...", flush=True)
        second, second_s = analyse(entities, replace(settings, redis_url=None))
        quoted = sorted({q.text for r in first for a in r.aspects for q in a.evidence})
        with SyncClient(server.grpc_url) as client:
            served_labels = {text: c.label for text, c in zip(quoted, client.sentiment(quoted))}
        print("the demo movies: today's client, then the old one ...", flush=True)
        new_demo, _ = analyse(demo, replace(settings, redis_url=None))
        old_demo, old_commit = old_client_results(demo, server.grpc_url)
        print("served sentences for the mining benchmark ...", flush=True)
        data = served_sentence_data(entities, server.grpc_url)
        version = server_version(server.grpc_url)
    print("aspect mining at scale ...", flush=True)
    scale = mining_scale(data, sizes, settings)
    measured = quality(entities, first, second, proposals, served_labels)
    return {
        "data_source": results.repo_relative(HELD_OUT), "triton_version": version, "startup_s": round(startup_s, 1),
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("urls", "redis_url")},
        "entities": [{"entity_id": e.entity_id, "reviews": len(e.reviews)} for e in entities],
        "runs_s": {"first": first_s, "second": second_s}, **measured, "targets": targets(measured["figures"]),
        "mining": {"noise": MINING_NOISE, "real_reviews": int(data["review"].max()) + 1,
                   "real_sentences": len(data["text"]), "sizes": scale},
        "results": [r.to_json() for r in first],
        "side_by_side": {"old_commit": old_commit, "entities": [asdict(e) for e in demo], "old": old_demo,
                         "new": [r.to_json() for r in new_demo]},
    }


def percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def markdown(report: dict) -> str:
    f, s = report["figures"], report["settings"]
    lines = results.header(
        report, "Aspects: grounding, polarity, names, coverage, stability, and mining at scale",
        f"{len(report['entities'])} movies of `{report['data_source']}` ({sum(e['reviews'] for e in report['entities'])} "
        f"reviews, {sum(r['sentences'] for r in report['rows'])} sentences), analysed in one `analyze_many` call "
        f"through Triton {report['triton_version']} (response cache off): {report['runs_s']['first']:.0f} s, then "
        f"{report['runs_s']['second']:.0f} s again without Redis. Settings: opinion_confidence "
        f"{s['opinion_confidence']}, max_aspects {s['max_aspects']} per polarity, min_aspect_share "
        f"{s['min_aspect_share']}, evidence_quotes {s['evidence_quotes']}, strength_gap {s['strength_gap']}, "
        f"strength_p {s['strength_p']};")
    lines += ["| measure | target | measured | |", "|---|---|---:|---|"]
    for t in report["targets"].values():
        value = t["value"] if isinstance(t["value"], str) else (percent(t["value"]) if isinstance(t["value"], float) else t["value"])
        verdict = "reported" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
        lines.append(f"| {t['name']} | {t['target']} | {value} | {verdict} |")
    found = ("" if f["naming_answers_found"] == f["entities_named"] else
             f" (of {f['naming_answers_found']} of the {f['entities_named']} naming answers found in Redis)")
    refusals = ", ".join(f"{reason}: {count}" for reason, count in sorted(f["refusals"].items()))
    lines += ["", f"Quotes checked: {f['quotes']} (aspects' evidence and the strengths' and weaknesses'); evidence "
              f"sentences: {f['evidence']}. Served polarity is true by construction (an aspect clusters sentences of "
              "one served label); the critics' figure asks whether the review the quote comes from was rated the "
              "same way, which a sentence of praise inside a rotten review is not.", "",
              f"Names: {f['names']}, {percent(f['named_by_generator'])} by the generator, the rest by the key-phrase "
              f"fallback. The generator proposed {f['proposals']} names{found}: {refusals}; "
              f"{percent(f['proposals_copied'])} of its proposals copied a 4-word review span before the check.", "",
              f"Coverage: {f['in_aspects']} of {f['opinion_sentences']} opinion sentences (served label confidence >= "
              f"{s['opinion_confidence']}) are inside a reported aspect.", "",
              f"Stability: {f['stable_entities']} of {f['entities']} entities had the same aspects on the second run: "
              f"{f['stable_mined']} the same counts and evidence, {f['stable_names']} the same names, "
              f"{f['stable_summaries']} the same summary.", "",
              f"Summaries that end with a full sentence (not cut by their length bound of "
              f"{f['summary_characters']} characters): {f['whole_summaries']} of {f['entities']}.", "",
              f"Strengths and weaknesses (against the other {f['entities'] - 1} movies): {f['strengths']} strengths in "
              f"{f['entities_with_strengths']} entities, {f['weaknesses']} weaknesses in {f['entities_with_weaknesses']}.",
              "", "## Per entity", "",
              "| entity | reviews | sentences | opinion | in aspects | coverage | aspects +/- | by generator | "
              "critics agree | strengths | weaknesses | same counts / names / summary |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['entity_id']} | {r['reviews']} | {r['sentences']} | {r['opinion_sentences']} | {r['in_aspects']} | "
                     f"{percent(r['in_aspects'] / r['opinion_sentences'] if r['opinion_sentences'] else None)} | "
                     f"{r['aspects_positive']} / {r['aspects_negative']} | {r['named_by_generator']} of {r['names']} | "
                     f"{r['critics_polarity']} of {r['evidence']} | {r['strengths']} | {r['weaknesses']} | "
                     f"{' / '.join('yes' if r[k] else '**no**' for k in ('stable_mined', 'stable_names', 'stable_summary'))} |")
    m = report["mining"]
    lines += ["", "## Aspect mining at scale", "",
              f"`client.aspects.clusters_of` alone on one synthetic entity: the {m['real_sentences']} real sentences of "
              f"the {m['real_reviews']} reviews above (served labels and embeddings) cycled into N reviews, each copy's "
              f"embedding with Gaussian noise of {m['noise']} per dimension (renormalised); one fresh process per size. "
              "Memory: growth of the process's peak RSS during the call, and the peak of Python and numpy allocations "
              "(tracemalloc).", "",
              "| reviews | sentences | opinion sentences | aspects | seconds | peak RSS growth MiB | peak traced MiB |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['reviews']:,} | {r['sentences']:,} | {r['opinion_sentences']:,} | {r['aspects']} | {r['seconds']:.2f} | "
              f"{r['peak_rss_growth_mib']} | {r['peak_traced_mib']} |" for r in m["sizes"]]
    lines += ["", "Side by side with the previous client's output for the demo movies: "
              "[aspects_side_by_side.md](aspects_side_by_side.md).", ""]
    return "\n".join(lines)


def side_by_side(report: dict) -> str:
    """The old and new output of the demo movies, for a person to judge."""
    side = report["side_by_side"]
    lines = ["# The demo movies: the old output and the new, side by side", "",
             f"The {len(side['entities'])} movies `make demo` analyses, in one call each way, on the same tritonserver, "
             f"without Redis. Old: the client of commit {side['old_commit'][:7]} (free-text \"praised\" / "
             "\"criticised\" lists and strengths from the generator, from the top-K reviews). New: today's client "
             "(aspects mined from sentences with their review counts and quotes, named by one generator call per "
             f"movie, strengths computed against the other {len(side['entities']) - 1}). Generated by "
             f"`{report['script']}`, {report['machine']['date']}.", ""]
    for entity, old, new in zip(side["entities"], side["old"], side["new"], strict=True):
        reviews = entity["reviews"]
        lines += [f"## {entity['entity_id'].replace('_', ' ').title()} ({len(reviews)} reviews, "
                  f"{new['sentiment_ratio']['positive']:.0%} positive)", "", "**Old**", "",
                  f"- praised: {'; '.join(old['summary'].get('positive', [])) or '(none)'}",
                  f"- criticised: {'; '.join(old['summary'].get('negative', [])) or '(none)'}",
                  f"- strengths: {'; '.join(old['strengths']) or '(none)'}", "", "**New**", ""]
        for aspect in new["aspects"]:
            quote = aspect["evidence"][0]
            lines.append(f"- {aspects.VERBS[aspect['polarity']]}: **{aspect['name']}** ({aspect['named_by']}) — "
                         f"{aspect['reviews']} of {len(reviews)} reviews ({aspect['share']:.0%}), {aspect['mentions']} "
                         f"sentences; e.g. review {quote['review']}: “{quote['text']}”")
        if not new["aspects"]:
            lines.append("- no aspects")
        lines.append(f"- summary: {new['summary'] or '(none)'}")
        contrasts = [c["text"] for c in [*new["strengths"], *new["weaknesses"]]]
        lines += [f"- strengths and weaknesses: {'; '.join(contrasts) or '(none clearly above the others)'}", ""]
    return "\n".join(lines)


def chart_and_side_by_side(report: dict, path) -> None:
    """The mining chart, and aspects_side_by_side.md beside it (rewritten with --render too)."""
    sizes = report["mining"]["sizes"]
    xs = [r["reviews"] for r in sizes]
    results.line_chart(path, "Aspect mining (clusters_of) on one entity", "reviews of the entity",
                       [("seconds", {"clusters_of": (xs, [r["seconds"] for r in sizes])}),
                        ("MiB", {"peak RSS growth": (xs, [r["peak_rss_growth_mib"] for r in sizes]),
                                 "peak traced": (xs, [r["peak_traced_mib"] for r in sizes])})])
    (path.parent / "aspects_side_by_side.md").write_text(side_by_side(report))


def arguments(parser) -> None:
    parser.add_argument("--entities", type=int, default=20, help="movies, best-covered first (default 20; --quick 3)")
    parser.add_argument("--reviews-per-entity", type=int, default=FULL_REVIEWS,
                        help=f"reviews per movie, at most (default {FULL_REVIEWS}: all; --quick 10)")


if __name__ == "__main__":
    results.main("aspects", measure, markdown, chart_and_side_by_side, arguments)
