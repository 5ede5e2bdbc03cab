"""The client's one implementation of the served models: async gRPC over several Triton servers.

Requests go round-robin over the URLs. A server that answers UNAVAILABLE (down, restarting,
queue full) is retried on the next URL after an exponential backoff, and skipped for `rest_s`
seconds; other errors (bad input, a deadline) go straight back to the caller. A generation is
retried from the start only while none of its text has reached the caller, so nothing is
duplicated. Code without an event loop uses the thin face in client/sync.py.
"""
import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from reviewlens.client import wire
from reviewlens.client.settings import Settings
from reviewlens.client.wire import GenerationParams, Generated, Sentiment
from reviewlens.ensemble import interface as api

log = logging.getLogger("reviewlens.client")

# The longest pause between two attempts: a restarting server is tried at least this often.
MAX_BACKOFF_S = 4.0


class ServersUnavailable(RuntimeError):
    """No server of the list answered within the retry window."""


# Triton's refusal when a model's queue is full. Over a stream it comes as an error message
# without a status code, so it is recognised by its text.
QUEUE_FULL = "Exceeds maximum queue size"


# What a stopping tritonserver answers once its models have unloaded and before its endpoint
# closes (about 1 to 6 s after SIGINT, perf/results/reliability.md): NOT_FOUND with this text.
STOPPING = "has no available versions"


def _unavailable(error: Exception) -> bool:
    """No server took the call: down, restarting, stopping, or refusing for now (a full queue)."""
    if isinstance(error, InferenceServerException):
        return error.status() == "StatusCode.UNAVAILABLE" or _refused(error) or _stopping(error)
    if isinstance(error, grpc.RpcError):
        return error.code() == grpc.StatusCode.UNAVAILABLE or _stopping(error)
    return False


def _stopping(error: Exception) -> bool:
    return "NOT_FOUND" in _cause(error) and STOPPING in _cause(error)


def _refused(error: Exception) -> bool:
    """An answer from a live server that refuses work for now."""
    return QUEUE_FULL in _cause(error)


def _cause(error: Exception) -> str:
    """The status code and the server's own message, on one line."""
    if isinstance(error, InferenceServerException):
        status, message = error.status() or "refused", error.message()
    else:
        status, message = str(error.code()), error.details()
    return " ".join(f"{status}: {message}".split())[:300]


async def _ended(responses, timeout_s: float = 5.0) -> bool:
    """Wait for the server to end a stream whose last response has come; False if it does not."""
    async def drain():
        async for _ in responses:
            pass
    try:
        await asyncio.wait_for(drain(), timeout_s)
        return True
    except (asyncio.TimeoutError, grpc.RpcError, InferenceServerException):
        return False


class TritonPool:
    """The served models behind a list of Triton gRPC endpoints, configured by Settings (urls,
    deadline_s, retry_window_s, backoff_s, rest_s, batch_size)."""

    def __init__(self, settings: Settings):
        s = settings.validate()
        self.urls = s.urls
        self.deadline_s = s.deadline_s
        self.retry_window_s = s.retry_window_s
        self.backoff_s = s.backoff_s
        self.batch_size = s.batch_size
        self.rest_s = s.rest_s
        self._clients = [aioclient.InferenceServerClient(url) for url in self.urls]
        self._turn = itertools.count()
        # A server that is down is skipped until this time (monotonic clock), so a dead one costs
        # one failed attempt per rest_s, not one per call.
        self._resting = [0.0] * len(self.urls)

    def _next_server(self) -> int:
        """The next server in turn that is not resting (any server when all are)."""
        now = time.monotonic()
        for _ in range(len(self._clients)):
            index = next(self._turn) % len(self._clients)
            if self._resting[index] <= now:
                return index
        return index

    async def _call(self, what: str, attempt_on):
        """Run attempt_on(client) on the next server, moving on while servers are UNAVAILABLE.

        Attempts go on for retry_window_s after the first failure (long enough for a server to
        restart), with jittered exponential backoff, and never sleep after the last one. A server
        that refuses for now (queue full) is backed off from, not marked down.
        """
        give_up = None
        for attempt in itertools.count():
            index = self._next_server()
            try:
                return await attempt_on(self._clients[index])
            except (InferenceServerException, grpc.RpcError) as error:
                if not _unavailable(error):
                    raise
                now = time.monotonic()
                give_up = give_up or now + self.retry_window_s
                if not _refused(error):
                    self._resting[index] = now + self.rest_s
                last = f"{self.urls[index]} unavailable: {_cause(error)}"
                # The last attempt falls at the end of the window.
                delay = min(self.backoff_s * 2 ** attempt * random.uniform(0.5, 1.0), MAX_BACKOFF_S, give_up - now)
                if delay <= 0:
                    raise ServersUnavailable(f"{what}: no server answered within {self.retry_window_s:g} s "
                                             f"({attempt + 1} attempts; last: {last})") from None
                log.info("%s: %s (attempt %d), trying again in %.2f s", what, last, attempt + 1, delay)
                await asyncio.sleep(delay)

    async def model_version(self, model: api.Model) -> str:
        """The newest version the servers serve of `model` (part of every cache key)."""
        async def attempt(client):
            metadata = await client.get_model_metadata(model.name, as_json=True, client_timeout=self.deadline_s)
            return max(metadata["versions"], key=int)
        return await self._call(f"metadata of {model.name}", attempt)

    async def model_config(self, model: api.Model) -> dict:
        """The model's config as JSON (Triton's own field names)."""
        async def attempt(client):
            return (await client.get_model_config(model.name, as_json=True, client_timeout=self.deadline_s))["config"]
        return await self._call(f"config of {model.name}", attempt)

    async def chat_template(self) -> Callable[[list[dict[str, str]]], str]:
        """The renderer of the chat format the served generator expects (its config says which)."""
        return wire.chat_template_of(await self.model_config(api.GENERATOR))

    async def _infer(self, model: api.Model, texts: list[str]) -> list:
        async def one_batch(batch):
            async def attempt(client):
                return await client.infer(model.name, [wire.text_input(batch)], outputs=wire.requested(model),
                                          client_timeout=self.deadline_s)
            return await self._call(model.name, attempt)
        return await asyncio.gather(*(one_batch(texts[start:start + self.batch_size])
                                      for start in range(0, len(texts), self.batch_size)))

    async def sentiment(self, texts: list[str]) -> list[Sentiment]:
        """Label, confidence, class probabilities and truncation flag for each text."""
        return [s for result in await self._infer(api.SENTIMENT, texts) for s in wire.sentiments(result)]

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate([wire.embeddings(result) for result in await self._infer(api.EMBED, texts)])

    async def _stream(self, client, prompt: str, max_tokens: int, params: GenerationParams, stream: bool,
                      priority: int) -> AsyncIterator[tuple[str, int, int]]:
        """(text delta, prompt tokens, output tokens so far) per response of one generation on one
        server; leaving the iteration early cancels the request there."""
        request = {"model_name": api.GENERATOR.name, "request_id": uuid.uuid4().hex, "priority": priority,
                   "inputs": wire.generator_inputs(prompt, max_tokens, params, stream),
                   "parameters": {"triton_enable_empty_final_response": True}}

        async def requests():
            yield request

        responses = client.stream_infer(requests(), stream_timeout=self.deadline_s)
        finished = False
        try:
            async for result, error in responses:
                if error is not None:
                    finished = True  # the generator sends an error as its final response
                    raise error
                finished, fields = wire.generator_response(result)
                if fields is not None:
                    yield fields
                if finished:
                    break
        finally:
            # A stream whose final response came is let end on the server's side (a cancel, or
            # dropping the call, after the final response can keep tritonserver 2.51 from ever
            # releasing the generator, which then never unloads at stop); one left early is cancelled.
            if finished:
                finished = await _ended(responses)
            if not finished:
                responses.cancel()

    async def stream(self, prompt: str, max_tokens: int, params: GenerationParams = GenerationParams(),
                     priority: int = 0) -> AsyncIterator[tuple[str, int, int]]:
        """Stream one generation: (text delta, prompt tokens, output tokens so far) as the server
        sends them. A server found UNAVAILABLE before the first response is replaced by the next;
        leaving the iteration early cancels the request on the server."""
        responses = None

        async def first_response(client):
            nonlocal responses
            responses = self._stream(client, prompt, max_tokens, params, True, priority)
            try:
                return await anext(responses, None)
            except BaseException:
                await responses.aclose()
                raise
        first = await self._call(api.GENERATOR.name, first_response)
        try:
            if first is not None:
                yield first
                async for fields in responses:
                    yield fields
        finally:
            await responses.aclose()

    async def generate(self, prompt: str, max_tokens: int, params: GenerationParams = GenerationParams(),
                       stream: bool = True, priority: int = 0,
                       on_text: Callable[[str], None] | None = None) -> Generated:
        """One generation, returned whole; streamed (for its time to first token, and on_text per
        chunk as it arrives) unless stream=False, which gets the text in one response. A server
        lost mid-way is retried from the start unless on_text has already seen some text."""
        delivered = False

        async def attempt(client):
            nonlocal delivered
            started = time.perf_counter()
            first, chunks, prompt_tokens, output_tokens = None, [], 0, 0
            try:
                async for delta, prompt_tokens, output_tokens in self._stream(client, prompt, max_tokens, params,
                                                                              stream, priority):
                    first = first or time.perf_counter()
                    if delta:
                        chunks.append(delta)
                        if on_text:
                            delivered = True
                            on_text(delta)
            except (InferenceServerException, grpc.RpcError) as error:
                if delivered and _unavailable(error):
                    raise RuntimeError(f"{api.GENERATOR.name}: the server went away mid-stream ({error})") from None
                raise
            end = time.perf_counter()
            return Generated("".join(chunks), chunks, prompt_tokens, output_tokens,
                             (first or end) - started, end - started)
        return await self._call(api.GENERATOR.name, attempt)

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self._clients))
