"""Async gRPC calls spread over several Triton servers, with retry on UNAVAILABLE and deadlines.

Requests go round-robin over the URLs. A server that answers UNAVAILABLE (down, restarting,
queue full) is retried on the next URL after an exponential backoff, and skipped for REST_S
seconds; other errors (bad input, a deadline) go straight back to the caller. A generator call
that fails is retried from the start: its text is returned whole, so nothing is duplicated.
"""
import asyncio
import itertools
import logging
import time
import uuid

import grpc
import numpy as np
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from reviewlens.client.generation import GenerationParams, Generated, request_inputs, response_fields
from reviewlens.client.inference import SENTIMENT_OUTPUTS, Sentiment, sentiments, text_input

log = logging.getLogger("reviewlens.client")


REST_S = 5.0


class ServersUnavailable(RuntimeError):
    """No server of the list answered within the retries."""


def _unavailable(error: Exception) -> bool:
    if isinstance(error, InferenceServerException):
        return error.status() == "StatusCode.UNAVAILABLE"
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


class TritonPool:
    """The served models behind a list of Triton gRPC endpoints."""

    def __init__(self, urls: tuple[str, ...], deadline_s: float = 300.0, retries: int = 4,
                 backoff_s: float = 0.25, batch_size: int = 64):
        self.urls = tuple(urls)
        self.deadline_s = deadline_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.batch_size = batch_size
        self._clients = [aioclient.InferenceServerClient(url) for url in self.urls]
        self._turn = itertools.count()
        # A server that answered UNAVAILABLE is skipped until this time (monotonic clock), so a dead
        # one costs one failed attempt per REST_S, not one per call.
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
        """Run attempt_on(client) on the next server, moving on while servers are UNAVAILABLE."""
        errors = []
        for attempt in range(self.retries + 1):
            index = self._next_server()
            try:
                return await attempt_on(self._clients[index])
            except (InferenceServerException, grpc.RpcError) as error:
                if not _unavailable(error):
                    raise
                self._resting[index] = time.monotonic() + REST_S
                errors.append(f"{self.urls[index]}: {str(error).splitlines()[0][:200]}")
                log.info("%s: %s unavailable (attempt %d), trying the next server", what, self.urls[index], attempt + 1)
                await asyncio.sleep(self.backoff_s * 2 ** attempt)
        raise ServersUnavailable(f"{what}: no server available after {self.retries + 1} attempts ({'; '.join(errors[-2:])})")

    async def model_version(self, model: str) -> str:
        """The newest version the servers serve of `model` (part of every cache key)."""
        async def attempt(client):
            metadata = await client.get_model_metadata(model, as_json=True, client_timeout=self.deadline_s)
            return max(metadata["versions"], key=int)
        return await self._call(f"metadata of {model}", attempt)

    async def generator_config(self, model: str = "generator") -> dict:
        async def attempt(client):
            return (await client.get_model_config(model, as_json=True, client_timeout=self.deadline_s))["config"]
        return await self._call(f"config of {model}", attempt)

    async def _infer(self, model: str, texts: list[str], outputs: list[str]) -> list[np.ndarray]:
        async def one_batch(batch):
            async def attempt(client):
                result = await client.infer(model, [text_input(batch)],
                                            outputs=[aioclient.InferRequestedOutput(o) for o in outputs],
                                            client_timeout=self.deadline_s)
                return [result.as_numpy(o) for o in outputs]
            return await self._call(model, attempt)
        parts = await asyncio.gather(*(one_batch(texts[start:start + self.batch_size])
                                       for start in range(0, len(texts), self.batch_size)))
        return [np.concatenate(column) for column in zip(*parts)]

    async def sentiment(self, texts: list[str]) -> list[Sentiment]:
        if not texts:
            return []
        return sentiments(*await self._infer("sentiment", texts, SENTIMENT_OUTPUTS))

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return (await self._infer("embed", texts, ["EMBEDDING"]))[0]

    async def generate(self, prompt: str, max_tokens: int, params: GenerationParams,
                       priority: int = 0, model: str = "generator") -> Generated:
        """Stream one generation (for its time to first token) and return the whole text."""
        async def attempt(client):
            request = {"model_name": model, "inputs": request_inputs(prompt, max_tokens, params, True),
                       "request_id": uuid.uuid4().hex, "priority": priority,
                       "parameters": {"triton_enable_empty_final_response": True}}

            async def requests():
                yield request

            started = time.perf_counter()
            first, chunks, prompt_tokens, output_tokens = None, [], 0, 0
            responses = client.stream_infer(requests(), stream_timeout=self.deadline_s)
            try:
                async for result, error in responses:
                    if error is not None:
                        raise error
                    final, fields = response_fields(result)
                    if fields is not None:
                        first = first or time.perf_counter()
                        delta, prompt_tokens, output_tokens = fields
                        chunks.append(delta)
                    if final:
                        break
            finally:
                responses.cancel()
            end = time.perf_counter()
            return Generated("".join(chunks), chunks, prompt_tokens, output_tokens,
                             (first or end) - started, end - started)
        return await self._call(model, attempt)

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self._clients))
