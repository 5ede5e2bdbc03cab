"""What perf/reliability.py needs to break a server and watch what it does: raw gRPC requests whose
every outcome is recorded, fuzz cases with the outcome each should get, the RSS of a server's
processes over time, and its readiness polled in a tight loop.

Every request ends in one of four ways (OUTCOMES): answered (a complete answer whose outputs pass
their check), refused (UNAVAILABLE: a full queue, a server stopping or none listening; a client
may try again later), error (an explicit error naming the problem) or lost (nothing came back: a
timeout, a connection dropped or a call cancelled mid-request, or an answer with outputs missing
or wrong).
"""
import asyncio
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass

import grpc
import numpy as np
import psutil
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from reviewlens.client import transport, wire
from reviewlens.ensemble import interface as api
from reviewlens.local.tritonserver import TritonServer
from serve_env_rss import process_rss_mib

OUTCOMES = ("answered", "refused", "error", "lost")
# How gRPC reports a connection that broke while a call was in flight: the request may have been
# taken and its answer never came, so such a call is lost, not refused.
_DROPPED = ("Socket closed", "Connection reset", "Broken pipe", "Stream removed", "RST_STREAM")
# How it reports a call that found no server listening: nothing was taken, the call is refused.
_NO_SERVER = ("failed to connect", "Connection refused")


@dataclass
class Outcome:
    """How one request ended, what the server said (status and message, one line), and when it
    was sent and done (time.monotonic())."""
    kind: str
    detail: str
    sent: float
    done: float

    @property
    def latency_s(self) -> float:
        return self.done - self.sent


def one_line(status: str, message: str) -> str:
    """`status: message` on one line, with loopback ports and request ids written PORT and ID so
    that messages group."""
    text = " ".join(f"{status}: {message}".split())
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return re.sub(r"request id: [0-9a-f]{32}", "request id: ID", text)[:240]


def classify(error: BaseException) -> tuple[str, str]:
    """(outcome, detail) of a request that raised `error`."""
    if isinstance(error, asyncio.TimeoutError):
        return "lost", "no answer within the client's timeout"
    if isinstance(error, transport.ServersUnavailable):  # the project's client, with no retry window
        return "refused", one_line("ServersUnavailable", str(error))
    if isinstance(error, InferenceServerException):
        status, message = str(error.status() or "no status (stream error)"), error.message() or ""
    elif isinstance(error, grpc.RpcError):
        status, message = str(error.code()), error.details() or ""
    else:
        return "lost", one_line(type(error).__name__, str(error))
    detail = one_line(status, message)
    if transport.QUEUE_FULL in message:
        return "refused", detail
    if "UNAVAILABLE" in status:
        return ("lost" if any(d in message for d in _DROPPED) else "refused"), detail
    # A call the server cancels as its gRPC endpoint closes ends with no answer and no reason (the
    # generator's own "the request was cancelled" is an explicit error and comes without a status).
    if any(code in status for code in ("DEADLINE_EXCEEDED", "CANCELLED")) or any(d in message for d in _DROPPED):
        return "lost", detail
    return "error", detail


def no_server(outcome: Outcome) -> bool:
    """A refusal because nothing listened on the port (the server had exited)."""
    return outcome.kind == "refused" and any(n in outcome.detail for n in _NO_SERVER)


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(o.kind for o in outcomes)
    return {kind: counts.get(kind, 0) for kind in OUTCOMES}


def details(outcomes: list[Outcome], kinds: tuple[str, ...] = ("refused", "error", "lost")) -> dict[str, int]:
    """How often each distinct server message came back, for outcomes of these kinds."""
    return dict(Counter(f"{o.kind}: {o.detail}" for o in outcomes if o.kind in kinds).most_common())


def tensor(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    """An input tensor holding exactly this array under this datatype, right or wrong."""
    value = grpcclient.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array)
    return value


def text_rows(rows: list[bytes]) -> list[grpcclient.InferInput]:
    """The ensembles' TEXT input for raw byte rows (valid UTF-8 or not), shape [n, 1]."""
    return [tensor(api.TEXT.name, np.array([[row] for row in rows], dtype=object).reshape(len(rows), 1), "BYTES")]


def valid_answer(model: str, result, rows: int) -> bool:
    """Whether a sentiment/embed result holds `rows` well-formed answers."""
    if model == api.SENTIMENT.name:
        labels, confidence = result.as_numpy(api.LABEL.name), result.as_numpy(api.CONFIDENCE.name)
        probs = result.as_numpy(api.PROBS.name)
        return (labels is not None and labels.shape[0] == rows
                and all(label[0].decode() in api.SENTIMENT_LABELS for label in labels)
                and bool(np.all((confidence >= 0) & (confidence <= 1)))
                and bool(np.allclose(probs.sum(axis=1), 1, atol=1e-3)))
    embedding = result.as_numpy(api.EMBEDDING.name)
    return (embedding is not None and embedding.shape[0] == rows and bool(np.isfinite(embedding).all())
            and bool(np.allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-2)))


async def infer(client: aioclient.InferenceServerClient, model: str, inputs, check=None, outputs=None,
                version: str = "", timeout_s: float = 120.0) -> Outcome:
    """One unary request; answered only if `check(result)` holds (when given)."""
    sent = time.monotonic()
    try:
        result = await asyncio.wait_for(client.infer(model, inputs, model_version=version, outputs=outputs,
                                                     client_timeout=timeout_s), timeout_s + 5)
    except Exception as error:  # noqa: BLE001  (every way a request can end is recorded)
        return Outcome(*classify(error), sent, time.monotonic())
    if check is not None and not check(result):
        return Outcome("lost", "an answer with outputs missing or out of range", sent, time.monotonic())
    return Outcome("answered", "", sent, time.monotonic())


async def generate(client: aioclient.InferenceServerClient, inputs, timeout_s: float = 300.0) -> Outcome:
    """One generator request over a stream, read to its final response and left to end on the
    server's side (cancelling a stream after its final response can keep tritonserver 2.51 from
    releasing the generator: client/transport.py)."""
    sent = time.monotonic()
    request = {"model_name": api.GENERATOR.name, "request_id": uuid.uuid4().hex, "inputs": inputs,
               "parameters": {"triton_enable_empty_final_response": True}}

    async def requests():
        yield request

    async def read() -> Outcome:
        responses = client.stream_infer(requests(), stream_timeout=timeout_s)
        outcome = None
        try:
            async for result, error in responses:
                if error is not None:  # the generator's final response is then this error
                    outcome = Outcome(*classify(error), sent, time.monotonic())
                    break
                final, _ = wire.generator_response(result)
                if final:
                    outcome = Outcome("answered", "", sent, time.monotonic())
                    break
        except Exception as error:  # noqa: BLE001  (the stream itself broke: nothing left to drain)
            return Outcome(*classify(error), sent, time.monotonic())
        if outcome is None:
            return Outcome("lost", "the stream ended without a final response", sent, time.monotonic())
        try:
            async for _ in responses:  # the server ends the stream after the final response
                pass
        except Exception:  # noqa: BLE001  (the outcome is already known)
            pass
        return outcome
    try:
        return await asyncio.wait_for(read(), timeout_s + 5)
    except asyncio.TimeoutError as error:
        return Outcome(*classify(error), sent, time.monotonic())


def short_prompt(text: str) -> str:
    """A short ChatML prompt about a text: a cheap prefill on the 2-core CPU."""
    return wire.chatml([{"role": "user", "content": f"One word for this review: {text[:80]}"}])


# -- fuzz cases ------------------------------------------------------------------------------------

def _random_code_points(rng: random.Random, length: int) -> bytes:
    """Characters from every plane and category: controls, format characters, combining marks,
    private use, noncharacters, emoji, CJK; now and then a lone surrogate (invalid UTF-8)."""
    pools = [(0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF), (0x200B, 0x200F),
             (0x202A, 0x202E), (0x2060, 0x206F), (0x0300, 0x036F), (0xFFF0, 0xFFFF), (0x1F300, 0x1FAFF)]
    chars = []
    for _ in range(length):
        low, high = rng.choice(pools)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars).encode("utf-8", errors="surrogatepass")


def _damaged(rng: random.Random, review: str) -> bytes:
    """A real review with 1-5 random byte flips, insertions, deletions or a cut (possibly inside a
    multi-byte character)."""
    data = bytearray(review.encode("utf-8"))
    for _ in range(rng.randint(1, 5)):
        if not data:
            break
        position = rng.randrange(len(data))
        action = rng.choice(("flip", "insert", "delete", "cut"))
        if action == "flip":
            data[position] ^= 1 << rng.randrange(8)
        elif action == "insert":
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif action == "delete":
            del data[position:position + rng.randint(1, 4)]
        else:
            del data[position:]
    return bytes(data)


FUZZ_KINDS = ("random bytes", "random code points", "damaged review")


def fuzz_row(rng: random.Random, kind: str, reviews: list[str]) -> bytes:
    if kind == "random bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if kind == "random code points":
        return _random_code_points(rng, rng.randint(0, 80))
    return _damaged(rng, rng.choice(reviews))


def expected_outcome(rows: list[bytes]) -> str:
    """What the served interface promises for these rows: refused ("error") if one is over the size
    limit, not UTF-8 or blank (interface.is_blank), answered otherwise."""
    for row in rows:
        if len(row) > api.MAX_TEXT_BYTES:
            return "error"
        try:
            text = row.decode("utf-8")
        except UnicodeDecodeError:
            return "error"
        if api.is_blank(text):
            return "error"
    return "answered"


# -- watching the server ---------------------------------------------------------------------------

class RssSampler:
    """RSS (MiB) of tritonserver and each of its stub processes, sampled in a thread."""

    def __init__(self, server: TritonServer, interval_s: float = 0.5):
        self.server, self.interval_s = server, interval_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, float]:
        try:
            rss = process_rss_mib(self.server)
        except psutil.Error:  # a stub exiting while listed
            return {}
        self.samples.append((time.monotonic(), rss))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class ReadinessPoller:
    """Readiness asked in a tight loop, on HTTP (`/v2/health/ready`) or gRPC (ServerReady), in a
    thread: (time.monotonic(), what came back) each time: "ready", "not ready", "no server"
    (nothing listening) or the error itself."""

    def __init__(self, server: TritonServer, protocol: str):
        self.server, self.protocol = server, protocol
        self.observations: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _http(self) -> str:
        try:
            with urllib.request.urlopen(f"http://{self.server.http_url}/v2/health/ready", timeout=2) as reply:
                return "ready" if reply.status == 200 else f"not ready (HTTP {reply.status})"
        except urllib.error.HTTPError as error:
            return f"not ready (HTTP {error.code})"
        except OSError as error:
            reason = str(getattr(error, "reason", error))
            return "no server" if "Connection refused" in reason else one_line("failed", reason)

    def _grpc(self, client: grpcclient.InferenceServerClient) -> str:
        try:
            return "ready" if client.is_server_ready(client_timeout=2) else "not ready"
        except InferenceServerException as error:
            message = error.message() or ""
            return "no server" if any(n in message for n in _NO_SERVER) else one_line(str(error.status()), message)

    def _run(self) -> None:
        client = grpcclient.InferenceServerClient(self.server.grpc_url) if self.protocol == "grpc" else None
        while not self._stop.is_set():
            state = self._http() if client is None else self._grpc(client)
            self.observations.append((time.monotonic(), state))
            if state == "no server":
                time.sleep(0.01)  # connection attempts to a closed port return at once
        if client is not None:
            client.close()

    def first(self, after: float, accept) -> float | None:
        """When a state for which accept(state) holds was first observed after `after`."""
        return next((t for t, s in self.observations if t >= after and accept(s)), None)

    def __enter__(self) -> "ReadinessPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
