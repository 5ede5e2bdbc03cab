"""Overload: a burst beyond the generator's queue is refused explicitly, nothing is lost, the server
stays up, and the project's client backs off from the refusals until every request is answered."""
import asyncio
import uuid

import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from reviewlens.client import transport, wire
from reviewlens.client.settings import Settings
from reviewlens.client.transport import TritonPool
from reviewlens.client.wire import GenerationParams
from reviewlens.ensemble import interface as api

# More than the generator decodes at once (its max_batch_size) plus what its queue holds (64).
BURST = 100
PROMPT = wire.chatml([{"role": "user", "content": "Say one word."}])


async def _one_request(client: aioclient.InferenceServerClient) -> str:
    """'answered', or the server's refusal message."""
    async def requests():
        yield {"model_name": api.GENERATOR.name, "request_id": uuid.uuid4().hex,
               "inputs": wire.generator_inputs(PROMPT, 2, GenerationParams(), False)}
    responses = client.stream_infer(requests(), stream_timeout=300)
    try:
        async for result, error in responses:
            if error is not None:
                raise error
            return "answered"
    except InferenceServerException as error:
        return error.message()
    finally:
        responses.cancel()


def test_a_burst_beyond_the_queue_is_refused_explicitly_and_nothing_is_lost(triton):
    async def burst():
        client = aioclient.InferenceServerClient(triton.grpc_url)
        try:
            return await asyncio.gather(*(_one_request(client) for _ in range(BURST)))
        finally:
            await client.close()
    outcomes = asyncio.run(burst())
    refused = [o for o in outcomes if o != "answered"]
    assert refused, "the burst never reached the queue limit"
    assert all(transport.QUEUE_FULL in o for o in refused), set(refused)
    assert outcomes.count("answered") + len(refused) == BURST  # every request got an answer or a refusal
    assert outcomes.count("answered") >= 64


def test_the_client_backs_off_from_refusals_until_every_request_is_answered(triton):
    async def burst():
        pool = TritonPool(Settings(urls=(triton.grpc_url,), redis_url=None, retry_window_s=120.0))
        try:
            return await asyncio.gather(*(pool.generate(PROMPT, 2) for _ in range(BURST)))
        finally:
            await pool.close()
    results = asyncio.run(burst())
    assert len(results) == BURST and all(r.output_tokens > 0 for r in results)
