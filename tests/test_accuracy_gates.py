"""The build's accuracy report (build/reports/accuracy.json) meets the serving gates."""
import json

import pytest

from reviewlens.local.paths import MODEL_REPOSITORY, MODELS_DIR, REPORTS_DIR
from reviewlens.build_engines import artifacts
from reviewlens.build_engines.cache import file_sha256


@pytest.fixture(scope="module")
def report():
    return json.loads((REPORTS_DIR / "accuracy.json").read_text())


def test_the_classifier_reaches_the_target_on_unseen_movies(report):
    assert report["classifier"]["held_out"]["movies"] >= 40
    assert report["classifier"]["fp32"]["accuracy"] >= 0.82


def test_the_served_classifier_is_within_one_point_of_fp32(report):
    classifier = report["classifier"]
    served = classifier[classifier["served"]]
    assert served["accuracy"] >= classifier["fp32"]["accuracy"] - 0.010


def test_the_served_embedder_keeps_cosine_to_fp32(report):
    embedder = report["embedder"]
    if embedder["served"] != "fp32":
        assert embedder[embedder["served"]]["cosine_mean"] >= 0.99


@pytest.mark.parametrize("model", ["classifier", "embedder"])
def test_every_int8_artifact_is_measured(report, model):
    for artifact in ("int8", "qdq"):
        measured = report[model][artifact]
        assert ("accuracy" in measured) if model == "classifier" else ("cosine_min" in measured)


@pytest.mark.parametrize("artifact", [a for a in artifacts.served("cpu") if a.file.endswith(".onnx")],
                         ids=lambda artifact: artifact.model)
def test_triton_serves_the_artifact_the_report_chose(report, artifact):
    model = artifact.exported
    chosen = MODELS_DIR / model / report[model][report[model]["served"]]["file"]
    assert file_sha256(MODEL_REPOSITORY / artifact.served_path) == file_sha256(chosen)
