"""Representative texts: the centroid of a set of embeddings and a diverse top-K around it."""
import numpy as np


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """The unit-length mean direction of unit-norm embeddings (zeros for none)."""
    if len(embeddings) == 0:
        return np.zeros(embeddings.shape[1] if embeddings.ndim == 2 else 0, dtype=np.float32)
    mean = embeddings.mean(axis=0)
    norm = np.linalg.norm(mean)
    return mean / norm if norm > 0 else mean


def mmr(embeddings: np.ndarray, query: np.ndarray, k: int, trade_off: float = 0.7) -> list[int]:
    """Maximal marginal relevance: up to k row indices, each the most similar to `query` after a
    penalty for its similarity to rows already chosen (trade_off 1 = plain nearest neighbours)."""
    if len(embeddings) == 0:
        return []
    relevance = embeddings @ query
    chosen: list[int] = []
    redundancy = np.full(len(embeddings), -np.inf)
    candidates = np.ones(len(embeddings), dtype=bool)
    for _ in range(min(k, len(embeddings))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(candidates, trade_off * relevance - (1 - trade_off) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        candidates[best] = False
        redundancy = np.maximum(redundancy, embeddings @ embeddings[best])
    return chosen
