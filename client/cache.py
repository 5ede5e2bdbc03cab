"""Redis cache of per-review results, entity results and generator outputs; never a point of failure.

Keys carry what the value depends on: `rl:{<entity tag>}:<kind>:<model>@<version>:<sha256 of the
content>`, so a new model version or an edited review never reads a stale value. Values are compact
and pickle-free: a sentiment is its label, float32 confidence and probabilities and a truncation
byte; an embedding is its float32 bytes; entity results and generator outputs are JSON.

One Redis (`redis://host:port/db`) or a Redis Cluster (`redis+cluster://host:port[,host:port...]`,
any of its nodes; the client finds the others). In a cluster the entity tag in braces is the hash
tag, so one entity's keys share a slot; lookups of several entities are split by slot.

When Redis is unreachable the cache logs one warning, answers "miss" and drops writes, and tries
the server again after `retry_after_s`: analysis goes on uncached and caching resumes by itself.
"""
import hashlib
import json
import logging
import time

import numpy as np
import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, RedisClusterException

from reviewlens.client.settings import REDIS_CLUSTER_SCHEME, cluster_nodes
from reviewlens.client.wire import Sentiment

log = logging.getLogger("reviewlens.client")

# A Redis that cannot answer: down, unreachable, or a cluster with a slot no live node serves.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, OSError, ClusterError, RedisClusterException)


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def encode_sentiment(value: Sentiment) -> bytes:
    numbers = np.array([value.confidence, *value.probs], dtype="<f4").tobytes()
    return value.label.encode("utf-8") + b"\0" + bytes([value.truncated]) + numbers


def decode_sentiment(raw: bytes) -> Sentiment:
    label, rest = raw.split(b"\0", 1)
    numbers = np.frombuffer(rest[1:], dtype="<f4")
    return Sentiment(label.decode("utf-8"), float(numbers[0]), tuple(map(float, numbers[1:])), bool(rest[0]))


def connect(url: str) -> redis.Redis | RedisCluster:
    """An async client for a `redis://` URL, or for a cluster given as `redis+cluster://` nodes."""
    timeouts = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
    if not url.startswith(REDIS_CLUSTER_SCHEME):
        return redis.from_url(url, **timeouts)
    nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]  # checked by Settings.validate
    # One retry, at once: a dead cluster costs seconds per lookup, not the default's backoff series.
    return RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 1), **timeouts)


class Cache:
    """Async Redis cache; url None disables it."""

    def __init__(self, url: str | None, retry_after_s: float, on_lookup=None):
        self.url = url
        self.on_lookup = on_lookup  # called with (hits, misses) after each lookup
        self.retry_after_s = retry_after_s
        self._redis = connect(url) if url else None
        self._down_since: float | None = None

    @property
    def available(self) -> bool:
        if self._redis is None:
            return False
        return self._down_since is None or time.monotonic() - self._down_since >= self.retry_after_s

    def _failed(self, error: Exception) -> None:
        if self._down_since is None:
            log.warning("Redis at %s is unreachable (%s); analysing without the cache until it is back",
                        self.url, error)
        self._down_since = time.monotonic()

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("Redis at %s is back; caching resumed", self.url)
            self._down_since = None

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Values for keys (None where absent or when Redis is down)."""
        if not keys:
            return []
        values = [None] * len(keys)
        if self.available:
            try:
                if isinstance(self._redis, RedisCluster):
                    values = await self._redis.mget_nonatomic(keys)  # one MGET per slot
                else:
                    values = await self._redis.mget(keys)
                self._recovered()
            except UNAVAILABLE as error:
                self._failed(error)
        if self.on_lookup:
            found = sum(v is not None for v in values)
            self.on_lookup(found, len(keys) - found)
        return values

    async def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        if not items or not self.available:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, ex=ttl_s)
                await pipe.execute()
            self._recovered()
        except UNAVAILABLE as error:
            self._failed(error)

    async def get_json(self, key: str):
        raw = (await self.get_many([key]))[0]
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value, ttl_s: int) -> None:
        await self.set_many({key: json.dumps(value, ensure_ascii=False).encode("utf-8")}, ttl_s)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
