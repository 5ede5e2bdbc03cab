"""make adapt REVIEWS=reviews.jsonl (or `reviewlens adapt`): the classifier adapted to the user's own
reviews, quantized, gated and served as a new version of the `classifier` model.

Only the texts are used. The steps:
1. sample: up to --sample texts (default 2,000), spread over entities and lengths;
2. teacher: the served generator labels each twice (client/teacher.py: two prompt variants, several
   reviews per call, stored as they come, so a stopped run resumes); a label is kept where the
   two agree;
3. fine-tune the current classifier (the built one, or SENTIMENT_MODEL's) on 80 % of the kept
   labels mixed with as many Rotten Tomatoes train reviews, so it keeps what it knew; the other
   20 % are the check set, never trained on;
4. calibrate: one temperature, fitted on the check set's teacher labels (least log loss), is folded
   into the classifier's last layer (weights and bias divided by it), so the served confidences
   are calibrated with no change to serving, and the re-check rule's confidence threshold means
   on the user's reviews what it means on the teacher's labels;
5. export to ONNX and per-token INT8 as `make build` does (build_engines/export_onnx.py and
   quantize.py; the TensorRT Q/DQ form is not built: the GPU profile serves version 1), and report
   both on the held-out movies (build_engines/evaluate.py) and on the check set;
6. gates: INT8 is served only within 1 point of FP32 on the movies (quantize.gate, else FP32), and
   the adapted model is installed only if its served variant loses at most 1 point on the
   held-out movies against the version it replaces;
7. install as the next version (build_engines/versions.py); `make rollback` restores the previous.

Any error stops the run before step 7 with one line saying what, and the repository unchanged.
The steps after the teacher are cached like the build's (build_engines/cache.py).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import contextlib
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from . import cache, data, evaluate, export_onnx, train_classifier, versions
from .cache import BuildError
from .data import Sources, build_data, find_sources, read_jsonl
from .export_onnx import TokenizedTexts, open_session
from .quantize import per_token_int8
from reviewlens.client.analysis import is_doubtful
from reviewlens.client.reviews_file import InputError, read_entities
from reviewlens.client.settings import Settings
from reviewlens.client.teacher import VARIANTS, missing_labels, teacher_labels
from reviewlens.client.transport import ServersUnavailable
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY

log = logging.getLogger("reviewlens.adapt")

SAMPLE_SIZE = 2000
MIN_TEXTS = 32          # fewer distinct texts give too few kept labels to learn or to check anything
CHECK_FRACTION = 0.2
LENGTH_BANDS = 3        # sampling spreads over entities and over short, middle and long texts
EPOCHS = 2
LEARNING_RATE = 2e-5    # a fifth of the first fine-tune's: a small step from a trained classifier
MAX_LENGTH = 256        # tokens per review in training: a user's reviews run longer than the snippets
MOVIE_DROP_GATE_POINTS = 1.0
RECHECK_BELOW = 0.8     # the re-check setting counted before and after (client/settings.py)
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
SEED = 20241202
WORK_DIR = BUILD_DIR / "adapt"


def sample_texts(texts_by_entity: dict[str, list[str]], size: int, seed: int = SEED) -> list[str]:
    """Up to `size` distinct texts, drawn round-robin over (entity, length band) groups in a seeded
    order, so every entity and every length is represented before any group gives a second text."""
    unique = {}
    for entity, texts in texts_by_entity.items():
        for text in texts:
            unique.setdefault(text, entity)
    lengths = sorted(len(text) for text in unique)
    bounds = [lengths[len(lengths) * band // LENGTH_BANDS] for band in range(1, LENGTH_BANDS)]
    groups: dict[tuple[str, int], list[str]] = {}
    for text, entity in unique.items():
        groups.setdefault((entity, sum(len(text) >= b for b in bounds)), []).append(text)
    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    for key in order:
        rng.shuffle(groups[key])
    picked = []
    while len(picked) < size and order:
        order = [key for key in order if groups[key]]
        for key in order:
            if len(picked) == size:
                break
            picked.append(groups[key].pop())
    return picked


def class_ids(checkpoint: Path) -> dict[str, int]:
    """The checkpoint's class id for "positive" and "negative" (its config's label names)."""
    config = transformers.AutoConfig.from_pretrained(checkpoint)
    names = [config.id2label[i] for i in range(config.num_labels)]
    sentiment = data.sentiment_of_classes(names)
    if sentiment is None:
        raise BuildError(f"{checkpoint}: its labels {names} are not named negative/positive; "
                         "adaptation needs to know which class is which")
    return {"positive": sentiment.index(1), "negative": sentiment.index(0)}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (from a log grid, 0.25 to 8) with the least log loss of softmax(logits / T)."""
    def log_loss(t: float) -> float:
        scaled = logits / t
        scaled = scaled - scaled.max(1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels].mean())
    return float(min(TEMPERATURES, key=log_loss))


def fold_temperature(model: torch.nn.Module, temperature: float) -> None:
    """Divide the logits by `temperature` inside the model: its last Linear layer producing the
    classes (BERT's classifier, RoBERTa's classifier.out_proj) has weight and bias divided by it."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels]
    if not heads:
        raise BuildError("the checkpoint has no Linear layer producing its classes to calibrate")
    with torch.no_grad():
        heads[-1].weight /= temperature
        if heads[-1].bias is not None:
            heads[-1].bias /= temperature


def _torch_logits(model, tokenizer, texts: list[str]) -> np.ndarray:
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt")
            outputs.append(model(**batch).logits.numpy())
    return np.concatenate(outputs)


def train_adapted(start: Path, train_file: Path, check_file: Path, out_dir: Path, epochs: int) -> None:
    """Fine-tune from `start` on train_file's reviews, fit the temperature on check_file's, fold it in."""
    started = time.monotonic()
    train_classifier.fine_tune(start, read_jsonl(train_file), out_dir, new_head=False, epochs=epochs,
                               learning_rate=LEARNING_RATE, max_length=MAX_LENGTH)
    fine_tune_s = time.monotonic() - started
    model = AutoModelForSequenceClassification.from_pretrained(out_dir)
    check = read_jsonl(check_file)
    logits = _torch_logits(model, AutoTokenizer.from_pretrained(out_dir), [r["text"] for r in check])
    temperature = fit_temperature(logits, np.array([r["label"] for r in check]))
    fold_temperature(model, temperature)
    model.save_pretrained(out_dir)
    (out_dir / "calibration.json").write_text(json.dumps({"temperature": temperature, "check_reviews": len(check),
                                                          "fine_tune_s": round(fine_tune_s, 1)}))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def probabilities(model_dir: Path, onnx_path: Path, texts: list[str]) -> np.ndarray:
    """Class probabilities of an exported classifier's ONNX for each text, tokenized as served."""
    logits = TokenizedTexts(model_dir, texts).run(open_session(onnx_path))
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def _movie_accuracy(model_dir: Path, onnx_path: Path, held_out: Path, ids: dict[str, int]) -> float:
    reviews = read_jsonl(held_out)
    predicted = probabilities(model_dir, onnx_path, [r["text"] for r in reviews]).argmax(1)
    truth = np.array([ids["positive"] if r["label"] == 1 else ids["negative"] for r in reviews])
    return float((predicted == truth).mean())


def recheck_figures(probs: np.ndarray, texts: list[str], teacher: list[str], ids: dict[str, int]) -> dict:
    """Re-checks per 1,000 reviews under the re-check rule at RECHECK_BELOW, and the agreement with
    the teacher of the labels then served (the teacher's where re-checked, else the classifier's)."""
    settings = Settings(recheck_below=RECHECK_BELOW)
    name_of = {i: name for name, i in ids.items()}
    labels = [name_of.get(int(i), "other") for i in probs.argmax(1)]
    doubtful = [is_doubtful(text, float(p.max()), settings) for text, p in zip(texts, probs)]
    served = [t if d else label for label, t, d in zip(labels, teacher, doubtful)]
    return {"rechecks_per_1000": round(1000 * sum(doubtful) / len(texts), 1),
            "classifier_agreement": float(np.mean([a == b for a, b in zip(labels, teacher)])),
            "served_agreement": float(np.mean([a == b for a, b in zip(served, teacher)]))}


def adapt(reviews: Path, settings: Settings, *, sample: int = SAMPLE_SIZE, epochs: int = EPOCHS,
          repository: Path = MODEL_REPOSITORY, work_dir: Path = WORK_DIR, sources: Sources | None = None) -> dict:
    """Run every step (module docstring); return the summary written to work_dir/adaptation.json.

    Raises InputError (the reviews file), ServersUnavailable (the teacher), BuildError (a gate or a
    model) and versions.VersionError (the repository), each before anything is installed.
    """
    started = time.monotonic()
    current = versions.served_version(repository)  # a repository out of step stops us before any work
    entities = read_entities(reviews)
    texts = sample_texts({e.entity_id: e.reviews for e in entities}, sample)
    if len(texts) < MIN_TEXTS:
        raise InputError(f"{reviews}: {len(texts)} distinct review texts; adaptation needs at least {MIN_TEXTS}")
    sources = sources or find_sources()
    start = train_classifier.classifier_checkpoint(sources)
    ids = class_ids(start)

    store = work_dir / "teacher_labels.jsonl"
    todo = missing_labels(texts, store)
    log.info("adapt: %d texts of %d entities; the teacher labels %d of %d (text, variant) pairs",
             len(texts), len(entities), todo, len(texts) * len(VARIANTS))
    teacher_started = time.monotonic()
    with tqdm(total=todo, desc="teacher labels", unit="label") as progress:
        labelled = teacher_labels(settings, texts, store, progress.update)
    teacher_s = time.monotonic() - teacher_started
    first, second = (labelled[v.name] for v in VARIANTS)
    kept = [(text, label) for text, label, other in zip(texts, first, second) if label == other]
    if len(kept) < MIN_TEXTS // 2:
        raise BuildError(f"the teacher's two prompts agree on {len(kept)} of {len(texts)} texts; too few to adapt on")
    random.Random(SEED).shuffle(kept)
    n_check = max(1, round(CHECK_FRACTION * len(kept)))
    check, train = kept[:n_check], kept[n_check:]

    movies = read_jsonl(build_data(sources) / "train.jsonl")
    random.Random(SEED).shuffle(movies)
    movie_label = {1: ids["positive"], 0: ids["negative"]}
    train_rows = ([{"text": t, "label": ids[label]} for t, label in train]
                  + [{"text": r["text"], "label": movie_label[r["label"]]} for r in movies[:len(train)]])
    check_rows = [{"text": t, "label": ids[label]} for t, label in check]
    _write_jsonl(work_dir / "train.jsonl", train_rows)
    _write_jsonl(work_dir / "check.jsonl", check_rows)

    this_module = sys.modules[__name__]
    checkpoint = cache.run_step(
        "adapt-classifier", lambda out: train_adapted(start, work_dir / "train.jsonl", work_dir / "check.jsonl", out, epochs),
        inputs=[start, work_dir / "train.jsonl", work_dir / "check.jsonl"], sources=[this_module, train_classifier],
        params={"epochs": epochs, "torch": torch.__version__, "transformers": transformers.__version__})
    calibration = json.loads((checkpoint / "calibration.json").read_text())
    held_out = build_data(sources) / "test.jsonl"
    exported = cache.run_step(
        "adapt-onnx", lambda out: _export_and_quantize(checkpoint, out, held_out),
        inputs=[checkpoint, held_out], sources=[this_module, export_onnx, *export_onnx.TOKEN_PATH],
        params={"onnx": onnx.__version__})
    report = evaluate.classifier_report(exported, {v: exported / f"model_{v}.onnx" for v in ("fp32", "int8")},
                                        build_data(sources))
    served_variant = report["served"]

    served_tokenizer = repository / "sentiment_tokenizer" / "1" / "tokenizer.json"
    if _tokenization(served_tokenizer) != _tokenization(exported / "tokenizer.json"):
        raise BuildError(f"the adapted classifier's tokenizer differs from the served one ({served_tokenizer}): "
                         "the build changed since it was installed; run `make build` first")
    previous = repository / versions.CLASSIFIER / str(current) / "model.onnx"
    check_texts = [t for t, _ in check]
    check_teacher = [label for _, label in check]
    before = recheck_figures(probabilities(exported, previous, check_texts), check_texts, check_teacher, ids)
    after = recheck_figures(probabilities(exported, exported / f"model_{served_variant}.onnx", check_texts),
                            check_texts, check_teacher, ids)
    movies_after = report[served_variant].get("accuracy")  # None: the labels are not named negative/positive
    movies_before = None if movies_after is None else _movie_accuracy(exported, previous, held_out, ids)
    movie_drop = None if movies_after is None else 100 * (movies_before - movies_after)

    summary = {
        "reviews_file": reviews.name, "entities": len(entities), "texts": len(texts),
        "teacher": {"labels_asked": todo, "agreement_of_prompts": len(kept) / len(texts), "kept": len(kept),
                    "positive_share": float(np.mean([label == "positive" for _, label in kept]))},
        "train_reviews": {"teacher": len(train), "movies": len(train)}, "check_reviews": len(check),
        "temperature": calibration["temperature"],
        "served_variant": served_variant, "int8_gate": report["gate"],
        "int8_agreement_with_fp32_on_movies": report["int8"]["agreement"],
        "held_out_movies": {"before": movies_before, "after": movies_after, "drop_points": movie_drop,
                            "gate_points": MOVIE_DROP_GATE_POINTS},
        "check_set": {"before": before, "after": after},
        # Fine-tuning as timed when the step ran (it may come from the cache).
        "seconds": {"teacher": round(teacher_s, 1), "fine_tune": calibration["fine_tune_s"],
                    "total": round(time.monotonic() - started, 1)},
        "replaces_version": current, "export_dir": str(exported),
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "adaptation.json").write_text(json.dumps(summary, indent=1))
    if movie_drop is not None and movie_drop > MOVIE_DROP_GATE_POINTS:
        raise BuildError(f"the adapted classifier loses {movie_drop:.1f} points on the held-out movies "
                         f"({100 * movies_before:.1f} % -> {100 * movies_after:.1f} %; at most "
                         f"{MOVIE_DROP_GATE_POINTS:g} allowed); not installed (figures in {work_dir / 'adaptation.json'})")
    summary["version"] = versions.install_version(repository, exported / f"model_{served_variant}.onnx", summary)
    (work_dir / "adaptation.json").write_text(json.dumps(summary, indent=1))
    return summary


def _tokenization(tokenizer_json: Path) -> dict:
    """What decides a tokenizer's ids: its file without the truncation and padding it last ran
    with, which the serving step sets itself (ensemble/tokens.py, from serving.json)."""
    return {k: v for k, v in json.loads(tokenizer_json.read_text()).items() if k not in ("truncation", "padding")}


def _export_and_quantize(checkpoint: Path, out_dir: Path, held_out: Path) -> None:
    export_onnx.export_classifier(checkpoint, out_dir, export_onnx.check_texts(held_out))
    int8 = per_token_int8(onnx.load(out_dir / "model_fp32.onnx"))
    onnx.save(int8, out_dir / "model_int8.onnx")
    onnx.checker.check_model(str(out_dir / "model_int8.onnx"))


def print_summary(summary: dict) -> None:
    """The adaptation in a few lines: what the teacher kept, the gates, re-checks before and after."""
    teacher, check, movies = summary["teacher"], summary["check_set"], summary["held_out_movies"]
    print(f"teacher: the two prompts agree on {100 * teacher['agreement_of_prompts']:.1f} % of "
          f"{summary['texts']} texts; {teacher['kept']} kept ({100 * teacher['positive_share']:.0f} % positive), "
          f"{summary['check_reviews']} of them held out as the check set")
    print(f"check set, agreement with the teacher: {100 * check['before']['classifier_agreement']:.1f} % before, "
          f"{100 * check['after']['classifier_agreement']:.1f} % after ({summary['served_variant']}, "
          f"temperature {summary['temperature']:.2f})")
    print(f"re-checks per 1,000 reviews at {RECHECK_BELOW}: {check['before']['rechecks_per_1000']:g} before, "
          f"{check['after']['rechecks_per_1000']:g} after; served labels agree with the teacher "
          f"{100 * check['before']['served_agreement']:.1f} % before, {100 * check['after']['served_agreement']:.1f} % after")
    if movies["before"] is not None:
        print(f"held-out movies: {100 * movies['before']:.2f} % before, {100 * movies['after']:.2f} % after "
              f"(gate: at most {movies['gate_points']:g} point lost)")
    print(f"times: teacher {summary['seconds']['teacher']:.0f} s, fine-tune {summary['seconds']['fine_tune']:.0f} s, "
          f"total {summary['seconds']['total']:.0f} s")


@contextlib.contextmanager
def _teacher_server(urls: list[str] | None):
    """The teacher's URLs: the given ones, else REVIEWLENS_URLS, else a tritonserver started for the run."""
    if urls or os.environ.get("REVIEWLENS_URLS"):
        yield tuple(urls) if urls else None
        return
    from reviewlens.local.tritonserver import TritonServer, free_port

    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    log.info("adapt: starting tritonserver for the teacher on %s (log: %s)", server.grpc_url, server.log_path)
    server.start()
    try:
        yield (server.grpc_url,)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """python -m reviewlens.build_engines.adapt REVIEWS [--url HOST:PORT] ...; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.adapt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reviews", type=Path, help="reviews.jsonl: entity_id and text per line (labels are not read)")
    parser.add_argument("--url", action="append", help="Triton gRPC endpoint HOST:PORT of the teacher (default: "
                        "REVIEWLENS_URLS, else a tritonserver started here for the run)")
    parser.add_argument("--sample", type=int, default=SAMPLE_SIZE, help=f"texts to label (default {SAMPLE_SIZE})")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"fine-tuning epochs (default {EPOCHS})")
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="teacher labels, splits and figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("reviewlens").setLevel(logging.INFO)
    transformers.utils.logging.disable_progress_bar()
    try:
        if args.sample < MIN_TEXTS or args.epochs < 1:
            raise InputError(f"--sample must be at least {MIN_TEXTS} and --epochs at least 1")
        with _teacher_server(args.url) as urls:
            settings = Settings.from_env(urls=urls).validate()
            summary = adapt(args.reviews, settings, sample=args.sample, epochs=args.epochs,
                            repository=args.model_repository, work_dir=args.work_dir)
    except (InputError, ServersUnavailable, BuildError, versions.VersionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (InputError, ValueError)) else 1
    print_summary(summary)
    print(f"installed as {versions.CLASSIFIER} version {summary['version']} in {args.model_repository} "
          f"(replaces {summary['replaces_version']}); restart tritonserver to serve it, `make rollback` to undo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
