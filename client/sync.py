"""The thin sync face of the async client, for code without an event loop (tests, perf, scripts).

Each object owns one event loop running in a background thread; its methods hand the async
implementation's coroutines to that loop and wait for them. Nothing is implemented twice: a sync
call is the async call (client/transport.py, client/analysis.py), run elsewhere.

    with SyncClient("127.0.0.1:8001") as triton:
        triton.sentiment(["Great cast."]); triton.embed([...])
        triton.generate(triton.chat_prompt([{"role": "user", "content": "Hi"}]), 16)
"""
import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from reviewlens.client.analysis import Analyzer, Entity, EntityAnalysis
from reviewlens.client.metrics import ClientMetrics
from reviewlens.client.settings import Settings
from reviewlens.client.transport import TritonPool
from reviewlens.client.wire import GenerationParams, Generated, Sentiment


class _BackgroundLoop:
    """An event loop in a daemon thread; run(coroutine) waits for the coroutine's result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="reviewlens-client", daemon=True)
        self._thread.start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator) -> Iterator:
        """The items of an async iterator, in this thread; closing early closes it in the loop."""
        items: queue.Queue = queue.Queue()
        end = object()

        async def pump():
            try:
                async for item in iterator:
                    items.put((item, None))
                items.put((end, None))
            except BaseException as error:  # handed to the caller's thread, cancellation included
                items.put((end, error))
        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                item, error = items.get()
                if error is not None:
                    raise error
                if item is end:
                    return
                yield item
        finally:
            future.cancel()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncClient:
    """The served models (sentiment, embed, generator) behind one or more Triton gRPC URLs."""

    def __init__(self, urls: str | tuple[str, ...], settings: Settings | None = None):
        urls = (urls,) if isinstance(urls, str) else tuple(urls)
        settings = replace(settings or Settings(), urls=urls)
        self._loop = _BackgroundLoop()

        async def connect():  # gRPC aio channels belong to the loop they are made in
            return TritonPool(settings)
        self.pool = self._loop.run(connect())
        self._chat_template = None

    def sentiment(self, texts: list[str]) -> list[Sentiment]:
        return self._loop.run(self.pool.sentiment(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._loop.run(self.pool.embed(texts))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Messages rendered in the served generator's chat format."""
        if self._chat_template is None:
            self._chat_template = self._loop.run(self.pool.chat_template())
        return self._chat_template(messages)

    def generate(self, prompt: str, max_tokens: int, params: GenerationParams = GenerationParams(),
                 stream: bool = False, priority: int = 0, on_text: Callable[[str], None] | None = None) -> Generated:
        """Generate text; with stream=True it arrives in chunks (on_text is called with each, from
        the client's loop thread) as it is made."""
        return self._loop.run(self.pool.generate(prompt, max_tokens, params, stream, priority, on_text))

    def stream(self, prompt: str, max_tokens: int, params: GenerationParams = GenerationParams(),
               priority: int = 0) -> Iterator[tuple[str, int, int]]:
        """Yield (text delta, prompt tokens, output tokens so far) as the server streams them.
        Closing the iterator early cancels the request on the server."""
        yield from self._loop.iterate(self.pool.stream(prompt, max_tokens, params, priority))

    def close(self) -> None:
        self._loop.run(self.pool.close())
        self._loop.close()

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SyncAnalyzer:
    """Analyzer's calls without an event loop: `with SyncAnalyzer(settings) as a: a.analyze(...)`."""

    def __init__(self, settings: Settings, metrics: ClientMetrics | None = None):
        self._loop = _BackgroundLoop()
        self._analyzer = Analyzer(settings, metrics)

    def __enter__(self) -> "SyncAnalyzer":
        self._loop.run(self._analyzer.__aenter__())
        return self

    def __exit__(self, *exc) -> None:
        self._loop.run(self._analyzer.__aexit__())
        self._loop.close()

    @property
    def metrics(self) -> ClientMetrics:
        return self._analyzer.metrics

    @property
    def versions(self) -> dict[str, str]:
        """The served model versions this session's cache keys carry ({model name: version})."""
        return dict(self._analyzer.versions)

    def analyze(self, entity: Entity) -> EntityAnalysis:
        return self._loop.run(self._analyzer.analyze(entity))

    def analyze_many(self, entities: list[Entity], on_done=None) -> list[EntityAnalysis]:
        return self._loop.run(self._analyzer.analyze_many(entities, on_done))
