"""Synchronous gRPC calls to the `sentiment` and `embed` ensembles.

Texts are sent in requests of at most `batch_size` rows (the ensembles' max_batch_size is 128);
Triton's dynamic batcher merges concurrent requests on the server side.
"""
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient


@dataclass(frozen=True)
class Sentiment:
    label: str
    confidence: float
    probs: tuple[float, ...]
    truncated: bool


SENTIMENT_OUTPUTS = ["LABEL", "CONFIDENCE", "PROBS", "TRUNCATED"]


def sentiments(labels: np.ndarray, confidences: np.ndarray, probs: np.ndarray, truncated: np.ndarray) -> list[Sentiment]:
    """The `sentiment` ensemble's SENTIMENT_OUTPUTS arrays as one Sentiment per text."""
    return [Sentiment(l[0].decode(), float(c[0]), tuple(map(float, p)), bool(t[0]))
            for l, c, p, t in zip(labels, confidences, probs, truncated)]


def text_input(texts: list[str]) -> grpcclient.InferInput:
    """A TEXT tensor of shape [n, 1] holding the texts as UTF-8 bytes."""
    array = np.array([[t.encode("utf-8")] for t in texts], dtype=object)
    tensor = grpcclient.InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


class ReviewModels:
    """The served review models behind one Triton gRPC endpoint."""

    def __init__(self, url: str, batch_size: int = 64, timeout_s: float = 60.0):
        self.client = grpcclient.InferenceServerClient(url)
        self.batch_size = batch_size
        self.timeout_s = timeout_s

    def _infer(self, model: str, texts: list[str], outputs: list[str]) -> list[np.ndarray]:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            result = self.client.infer(model, [text_input(texts[start:start + self.batch_size])],
                                       outputs=[grpcclient.InferRequestedOutput(o) for o in outputs],
                                       client_timeout=self.timeout_s)
            parts.append([result.as_numpy(o) for o in outputs])
        return [np.concatenate(column) for column in zip(*parts)]

    def sentiment(self, texts: list[str]) -> list[Sentiment]:
        """Label, confidence, class probabilities and truncation flag for each text."""
        if not texts:
            return []
        return sentiments(*self._infer("sentiment", texts, SENTIMENT_OUTPUTS))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self._infer("embed", texts, ["EMBEDDING"])[0]

    def close(self) -> None:
        self.client.close()
