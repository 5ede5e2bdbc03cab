"""Adaptation (`make adapt`): the served generator labels a user's review texts, the classifier is
fine-tuned on them, quantized, gated and installed as a new model version that a rollback undoes.

The end-to-end test runs against the session's real tritonserver (the teacher) and starts servers
of its own on a copy of the model repository (hardlinks) to check what each version serves.
"""
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from transformers import BertConfig, BertForSequenceClassification

from reviewlens.build_engines import adapt, versions
from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer, SyncClient
from reviewlens.ensemble import interface as api
from reviewlens.local.drug_reviews import drug_reviews, write_reviews_file
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.local.tritonserver import TritonServer, free_port


def _repository_copy(target: Path) -> Path:
    """The model repository with every file hardlinked (the GGUF too): cheap, and the real one untouched."""
    shutil.copytree(MODEL_REPOSITORY, target, copy_function=os.link,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _listing(repository: Path) -> list[str]:
    return sorted(str(p.relative_to(repository)) for p in repository.rglob("*"))


# --- sampling, calibration, versions: no server -------------------------------------------------

def test_the_sample_takes_every_entity_and_every_length_band_before_a_second_text_of_any():
    texts = {"big": [f"big review {'x' * (10 * i)}" for i in range(30)],
             "small": ["small one", "small two " + "y" * 300],
             "mid": [f"mid {'z' * (40 * i)}" for i in range(6)]}
    picked = adapt.sample_texts(texts, 8)
    assert len(picked) == len(set(picked)) == 8
    by_entity = Counter(next(e for e, ts in texts.items() if t in ts) for t in picked)
    assert set(by_entity) == {"big", "small", "mid"}
    assert by_entity["small"] == 2  # both of its texts (two length bands) before "big" fills the rest
    assert adapt.sample_texts(texts, 8) == picked  # seeded
    assert len(adapt.sample_texts(texts, 1000)) == 38  # never more than there are


def test_the_fitted_temperature_recovers_the_one_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(4000, 2))
    scaled = logits / 2.0
    p_second = np.exp(scaled[:, 1]) / np.exp(scaled).sum(1)
    labels = (rng.random(4000) < p_second).astype(int)
    assert adapt.fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_folding_the_temperature_divides_the_logits_and_keeps_every_label():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2)).eval()
    ids = torch.randint(0, 50, (6, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        adapt.fold_temperature(model, 2.5)
        after = model(input_ids=ids).logits
    torch.testing.assert_close(after, before / 2.5)
    assert torch.equal(after.argmax(1), before.argmax(1))


def _toy_repository(root: Path) -> Path:
    repository = root / "model_repository"
    (repository / versions.CLASSIFIER / "1").mkdir(parents=True)
    (repository / versions.CLASSIFIER / "1" / "model.py").write_text("# the backend's code\n")
    (repository / versions.ENSEMBLE / "1").mkdir(parents=True)
    return repository


def test_a_version_is_installed_beside_the_old_one_and_a_rollback_restores_the_old_one(tmp_path):
    repository = _toy_repository(tmp_path)
    onnx = tmp_path / "adapted.onnx"
    onnx.write_bytes(b"adapted graph")
    assert versions.install_version(repository, onnx, {"reviews_file": "mine.jsonl"}) == 2
    assert versions.served_version(repository) == 2
    new = repository / versions.CLASSIFIER / "2"
    assert (new / "model.onnx").read_bytes() == b"adapted graph"
    assert (new / "model.py").read_text() == "# the backend's code\n"
    assert '"replaces": 1' in (new / versions.PROVENANCE).read_text()
    assert (repository / versions.ENSEMBLE / "2").is_dir()
    assert not any(p.name.startswith(".") for p in repository.rglob("*"))  # no staging left inside

    assert versions.rollback(repository, rolled_back=tmp_path / "rolled_back") == 1
    assert versions.versions(repository, versions.CLASSIFIER) == [1]
    assert versions.versions(repository, versions.ENSEMBLE) == [1]
    kept = list((tmp_path / "rolled_back").glob(f"{versions.CLASSIFIER}-2-*"))
    assert kept and (kept[0] / "model.onnx").read_bytes() == b"adapted graph"
    with pytest.raises(versions.VersionError, match="nothing to roll back to"):
        versions.rollback(repository, rolled_back=tmp_path / "rolled_back")


def test_a_rollback_interrupted_between_its_two_moves_can_be_finished(tmp_path):
    repository = _toy_repository(tmp_path)
    onnx = tmp_path / "adapted.onnx"
    onnx.write_bytes(b"x")
    versions.install_version(repository, onnx, {})
    shutil.rmtree(repository / versions.CLASSIFIER / "2")  # as if stopped after the first move
    with pytest.raises(versions.VersionError, match="do not end on the same number"):
        versions.served_version(repository)
    assert versions.rollback(repository, rolled_back=tmp_path / "rolled_back") == 1


# --- bad input: one clear line, nothing installed -----------------------------------------------

def _refused(tmp_path: Path, reviews: Path, code: int, message: str, *args: str, env: dict | None = None) -> None:
    """Run `python -m reviewlens.build_engines.adapt` on a repository copy: it must exit with `code`
    and one error line containing `message`, and leave the repository as it was."""
    repository = _repository_copy(tmp_path / "repository")
    before = _listing(repository)
    result = subprocess.run([sys.executable, "-m", "reviewlens.build_engines.adapt", str(reviews),
                             "--model-repository", str(repository), "--work-dir", str(tmp_path / "work"), *args],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert _listing(repository) == before
    assert not (tmp_path / ".repository-staging").exists()


@pytest.mark.parametrize("content, message", [
    (b'{"entity_id": "a", "text": "fine"}\n{"entity_id": "a", "text": \n', ":2: not valid JSON"),
    (b"", "no reviews"),
    (b'{"entity_id": "a", "text": "The only review."}\n', "1 distinct review texts; adaptation needs at least 32"),
    (b'{"entity_id": "a", "text": "caf\xe9"}\n', ":1: not valid UTF-8"),
], ids=["bad-json", "empty", "one-review", "invalid-utf8"])
def test_a_reviews_file_that_cannot_be_adapted_on_is_refused_with_one_line(tmp_path, content, message):
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_bytes(content)
    _refused(tmp_path, reviews, 2, message, "--url", "127.0.0.1:1")


def test_a_dead_teacher_is_reported_and_nothing_is_installed(tmp_path):
    reviews = tmp_path / "reviews.jsonl"
    write_reviews_file(drug_reviews("train")[:40], reviews)
    _refused(tmp_path, reviews, 1, "no server answered", "--url", f"127.0.0.1:{free_port()}",
             env={"REVIEWLENS_RETRY_WINDOW_S": "1"})


# --- end to end against the real server ---------------------------------------------------------

def _server_on(repository: Path) -> TritonServer:
    return TritonServer(model_repository=repository, grpc_port=free_port(), http_port=free_port(),
                        metrics_port=free_port(), log_path=BUILD_DIR / "triton" / "adapt-test-server.log")


def _served(url: str, texts: list[str]) -> tuple[dict[str, list[str]], np.ndarray]:
    with grpcclient.InferenceServerClient(url) as client:
        served = {model: client.get_model_metadata(model, as_json=True)["versions"]
                  for model in (api.SENTIMENT.name, api.CLASSIFIER.name)}
    with SyncClient(url) as sentiment:
        probs = np.array([s.probs for s in sentiment.sentiment(texts)])
    return served, probs


@pytest.mark.slow
@pytest.mark.timeout(900)  # the teacher, a fine-tune, an export and three servers: about 5 minutes on 2 cores
def test_adaptation_labels_fine_tunes_installs_a_version_that_answers_and_a_rollback_restores_the_old(
        triton, models, redis_server, tmp_path):
    repository = _repository_copy(tmp_path / "repository")
    # Short reviews keep the teacher's calls quick; they are the package's texts, their labels unread.
    reviews = sorted(drug_reviews("train"), key=lambda r: len(r["text"]))[:40]
    reviews_file = tmp_path / "reviews.jsonl"
    write_reviews_file(reviews, reviews_file)
    probes = [r["text"] for r in drug_reviews("test")[:16]]
    entity = Entity("probe-drug", probes[:6])
    cached = Settings(urls=(triton.grpc_url,), redis_url=redis_server.url)
    _, old_probs = _served(triton.grpc_url, probes)
    with SyncAnalyzer(cached) as analyzer:
        analyzer.analyze(entity)  # cached under version 1

    summary = adapt.adapt(reviews_file, Settings(urls=(triton.grpc_url,), redis_url=None), sample=40, epochs=1,
                          repository=repository, work_dir=tmp_path / "work")

    assert summary["version"] == 2 and summary["replaces_version"] == 1
    assert summary["texts"] == 40 and summary["teacher"]["labels_asked"] == 80
    assert 0 < summary["teacher"]["kept"] <= 40
    assert summary["served_variant"] in ("int8", "fp32")
    assert summary["held_out_movies"]["drop_points"] <= adapt.MOVIE_DROP_GATE_POINTS
    assert (tmp_path / "work" / "adaptation.json").exists()

    with _server_on(repository) as server:
        served, new_probs = _served(server.grpc_url, probes)
        with SyncAnalyzer(replace(cached, urls=(server.grpc_url,))) as analyzer:
            assert analyzer.versions[api.SENTIMENT.name] == "2"
            under_new = analyzer.analyze(entity)
    assert served == {api.SENTIMENT.name: ["2"], api.CLASSIFIER.name: ["2"]}
    assert not np.allclose(new_probs, old_probs, atol=1e-3)
    assert not under_new.metrics["from_cache"]  # the version-1 result was not served as version 2's

    assert versions.rollback(repository, rolled_back=tmp_path / "rolled_back") == 1
    with _server_on(repository) as server:
        served, restored_probs = _served(server.grpc_url, probes)
        with SyncAnalyzer(replace(cached, urls=(server.grpc_url,))) as analyzer:
            under_old = analyzer.analyze(entity)
    assert served == {api.SENTIMENT.name: ["1"], api.CLASSIFIER.name: ["1"]}
    np.testing.assert_allclose(restored_probs, old_probs, atol=1e-5)
    assert under_old.metrics["from_cache"]  # version 1's result again
