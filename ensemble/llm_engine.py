"""Continuous batching over llama.cpp: several generations share one context and one decode loop.

On 2 CPU cores two llama.cpp instances give no more tokens/s than one, but decoding several
sequences in one `llama_decode` does (about 1.3x at 4 sequences). So one thread owns one context
with `max_sequences` sequence slots in a unified KV cache; between two decode steps it admits
waiting requests into free slots, and each step carries one new token per decoding sequence plus
a chunk of prompt tokens of the sequences still in prefill (chunked prefill: `prefill_chunk` tokens per
step, so a long prompt does not stall the others for seconds).

Prompt-prefix reuse: prefill is the expensive part on the CPU (~75 prompt tokens/s against ~25
output tokens/s) and analysis prompts start with the same instructions. After a prompt is
prefilled its KV cells are also tagged with one of `prefix_slots` extra sequence ids (in a
unified cache a copy only adds a tag, no memory); a new prompt that shares a prefix with one of
them starts from those cells and prefills only the rest. Prompts that arrive together share too:
a request whose start another prompt in flight is still prefilling waits for those cells (a step
or two) and copies them, instead of computing them a second time.

Text goes out as it is generated, never splitting a UTF-8 character, and holding back text that
could be the start of a stop word. The engine knows nothing of Triton: a `Generation` carries
callbacks, so the Triton model, tests and benchmarks drive the same code; every request that ends,
whichever way, is reported once as `RequestFigures` (the Triton model publishes them as metrics).

Uses llama-cpp-python's `_internals` wrappers (pinned to 0.3.36 by build_engines/install_llama_cpp.sh).
"""
import codecs
import ctypes
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jsonschema
import llama_cpp
import numpy as np
from llama_cpp import _internals, llama_grammar

from reviewlens.ensemble import interface

log = logging.getLogger(__name__)

MIN_PREFIX_REUSE = 16  # tokens; shorter common prefixes are not worth a cache lookup
PENALTY_WINDOW = 256   # output tokens the repetition/presence/frequency penalties look back on


class GenerationError(ValueError):
    """The request cannot be served as given; the message says why (sent back as INVALID_ARG)."""


@dataclass
class Generation:
    """One request: what to generate and where the text goes.

    on_text(delta, n_output_tokens) receives text as it is generated (only called when stream);
    on_done(text, figures) receives the text not yet delivered (all of it when not streaming) and
    the request's RequestFigures; on_error(message) ends the request with an error instead;
    on_cancel() ends it once is_cancelled() turns true. Exactly one of on_done / on_error / on_cancel is called.
    """

    prompt: str
    max_tokens: int
    on_done: Callable[[str, "RequestFigures"], None]
    on_error: Callable[[str], None]
    on_text: Callable[[str, int], None] = lambda delta, n: None
    is_cancelled: Callable[[], bool] = lambda: False
    on_cancel: Callable[[], None] = lambda: None
    stream: bool = False
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0            # 0: no top-k cut
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # 1: off; >1 discourages tokens seen in the last PENALTY_WINDOW
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop_words: list[str] = field(default_factory=list)
    guide_type: str | None = None  # one of interface.GUIDE_TYPES
    guide: str = ""
    submitted: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class RequestFigures:
    """What the engine did for one request, reported once when it ends, whichever way."""

    finish_reason: str                   # one of interface.FINISH_REASONS
    prompt_tokens: int
    cached_prompt_tokens: int            # KV cells copied from the prefix cache or a prompt in flight
    computed_prompt_tokens: int          # prefilled by this request (fewer if it ended during prefill)
    output_tokens: int
    queue_s: float | None                # submitted -> admitted into a sequence slot; None: never admitted
    time_to_first_token_s: float | None  # submitted -> first output token; None: no token
    decode_s: float | None               # first output token -> end; None: no token


@dataclass
class _Sequence:
    """A generation admitted into a KV-cache slot."""

    request: Generation
    seq_id: int
    tokens: list[int]          # prompt tokens
    sampler: "_Sampler"
    n_past: int = 0            # tokens of this sequence already in the KV cache
    n_cached: int = 0          # prompt tokens taken from the prefix cache
    next_token: int | None = None
    n_output: int = 0
    text: str = ""             # decoded output so far
    n_sent: int = 0            # characters of `text` already delivered
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    admitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None

    @property
    def in_prefill(self) -> bool:
        return self.n_past < len(self.tokens)


@dataclass
class _Prefix:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    last_used: float = 0.0


class _Sampler:
    """Picks a sequence's next token: the chain (penalties, then greedy or top-k/top-p/temperature/dist),
    and, for a guided request, its grammar.

    The grammar is checked on the token the chain picks, and applied to the whole vocabulary only
    when it refuses that token, as llama.cpp's own `common_sampler` does: checking one token costs
    microseconds, applying a JSON-schema grammar to 151k candidates costs tens of milliseconds per
    token. The result is the same token: greedy takes the best token the grammar allows either way;
    sampling by temperature draws an allowed token with its probability renormalised over the allowed
    ones (P(t) + P(refused) * P(t) / P(allowed) = P(t) / P(allowed)); only a top-k/top-p cut is
    taken over the allowed tokens when the first pick is refused, not over all of them.
    """

    def __init__(self, chain: _internals.LlamaSampler, grammar=None, n_vocab: int = 0):
        self.chain, self.grammar = chain, grammar
        if grammar is not None:
            self.candidates = _internals.LlamaTokenDataArray(n_vocab=n_vocab)
            self.one = (llama_cpp.llama_token_data * 1)()
            self.one_array = llama_cpp.llama_token_data_array(data=self.one, size=1, selected=-1, sorted=False)

    def sample(self, context: _internals.LlamaContext, index: int) -> int:
        if self.grammar is None:
            return self.chain.sample(context, index)  # applies the chain and accepts the token
        candidates = self.candidates
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context.ctx, index), shape=(candidates.n_vocab,))
        token = self._pick(logits)
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 0.0, 0.0
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self.one_array))
        if self.one[0].logit == -np.inf:  # refused: the grammar cuts the vocabulary, then the chain picks
            token = self._pick(logits, self.grammar)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def _pick(self, logits, grammar=None) -> int:
        candidates = self.candidates
        candidates.copy_logits(logits)
        candidates.candidates.selected = -1
        pointer = ctypes.byref(candidates.candidates)
        if grammar is not None:
            llama_cpp.llama_sampler_apply(grammar, pointer)
        llama_cpp.llama_sampler_apply(self.chain.sampler, pointer)
        return int(candidates.candidates_data.id[candidates.candidates.selected])

    def close(self) -> None:
        self.chain.close()
        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None


def amx_kernels_crash() -> bool:
    """Whether llama.cpp must load weights without its extra buffer types (no AMX, no repacking).

    Its AMX kernels crash (SIGSEGV in ggml_backend_amx_mul_mat, on any prompt of more than one
    token) on an AMX CPU in a Firecracker VM, the kind of machine this project runs on.
    """
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()


class LlamaEngine:
    """Owns the llama.cpp model and context and runs the decode loop in a background thread.

    The sizes come from the generator's config parameters and have no default here: n_ctx KV cells
    shared by all sequences, max_sequences decoded together, prefix_slots cached prompts,
    prefill_chunk prompt tokens per step, n_threads (0: all cores). on_figures receives every
    request's RequestFigures on the decode thread, before the request's own last callback.
    """

    def __init__(self, gguf_path: str, *, n_ctx: int, max_sequences: int, prefix_slots: int, prefill_chunk: int,
                 n_threads: int, on_figures: Callable[[RequestFigures], None] = lambda figures: None):
        logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)  # llama.cpp's own log: warnings only
        self.max_sequences = max_sequences
        self.on_figures = on_figures
        self.n_batch = n_batch = prefill_chunk + max_sequences
        model_params = _internals.LlamaModel.default_params()
        if amx_kernels_crash():
            model_params.use_extra_bufts = False
        self.model = _internals.LlamaModel(path_model=gguf_path, params=model_params, verbose=False)
        context_params = _internals.LlamaContext.default_params()
        context_params.n_ctx = n_ctx
        context_params.n_batch = n_batch
        context_params.n_ubatch = n_batch
        context_params.n_seq_max = max_sequences + prefix_slots
        context_params.kv_unified = True
        # 0: every core this process may run on (its CPU affinity: taskset, a container's cpuset).
        context_params.n_threads = context_params.n_threads_batch = n_threads or len(os.sched_getaffinity(0))
        self.context = _internals.LlamaContext(model=self.model, params=context_params, verbose=False)
        self.n_ctx = self.context.n_ctx()
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.prefixes = [_Prefix(seq_id=max_sequences + i) for i in range(prefix_slots)]
        self.chat_template = self.model.metadata().get("tokenizer.chat_template", "")

        self._waiting: list[tuple[Generation, list[int]]] = []
        self._active: dict[int, _Sequence] = {}
        self._lock = threading.Condition()
        self._stopping = False
        self._refusing = False
        self._thread = threading.Thread(target=self._loop, name="llama-decode", daemon=True)
        self._thread.start()

    # -- requests ------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a prompt; special tokens written as text (<|im_start|>) are parsed as such."""
        return self.model.tokenize(text.encode("utf-8"), add_bos=self.model.add_bos_token(), special=True)

    def check(self, request: Generation) -> list[int]:
        """Validate a request against the model and context; return its prompt tokens or raise GenerationError."""
        if not request.prompt.strip():
            raise GenerationError(f"{interface.TEXT_INPUT.name} is empty")
        if request.max_tokens <= 0:
            raise GenerationError(f"{interface.MAX_TOKENS.name} must be at least 1, got {request.max_tokens}")
        if not 0.0 <= request.temperature <= 10.0:
            raise GenerationError(f"{interface.TEMPERATURE.name} must be in [0, 10], got {request.temperature}")
        if not 0.0 < request.top_p <= 1.0:
            raise GenerationError(f"{interface.TOP_P.name} must be in (0, 1], got {request.top_p}")
        if request.top_k < 0:
            raise GenerationError(f"{interface.TOP_K.name} must be >= 0, got {request.top_k}")
        if not 0.0 < request.repetition_penalty <= 10.0:
            raise GenerationError(f"{interface.REPETITION_PENALTY.name} must be in (0, 10], "
                                  f"got {request.repetition_penalty}")
        for tensor, value in ((interface.PRESENCE_PENALTY, request.presence_penalty),
                              (interface.FREQUENCY_PENALTY, request.frequency_penalty)):
            if not -2.0 <= value <= 2.0:
                raise GenerationError(f"{tensor.name} must be in [-2, 2], got {value}")
        if request.guide_type is not None and request.guide_type not in interface.GUIDE_TYPES:
            raise GenerationError(f"{interface.GUIDE_TYPE.name} {request.guide_type!r} is not supported here; "
                                  f"use one of {', '.join(interface.GUIDE_TYPES)}")
        tokens = self.tokenize(request.prompt)
        if len(tokens) >= self.n_ctx:
            raise GenerationError(f"the prompt has {len(tokens)} tokens; the context holds {self.n_ctx}")
        if len(tokens) + request.max_tokens > self.n_ctx:
            raise GenerationError(f"prompt ({len(tokens)} tokens) + {interface.MAX_TOKENS.name} ({request.max_tokens}) exceeds "
                                  f"the context of {self.n_ctx} tokens; ask for at most "
                                  f"{self.n_ctx - len(tokens)} tokens")
        self._sampler(request).close()  # builds the grammar: an invalid guide fails here, not later
        return tokens

    def submit(self, request: Generation, tokens: list[int]) -> None:
        """Queue a request with the prompt tokens check() returned; callbacks run on the decode thread."""
        with self._lock:
            self._waiting.append((request, tokens))
            self._lock.notify()

    def load(self) -> int:
        """Requests admitted or waiting (the Triton model stops taking requests at max_sequences)."""
        with self._lock:
            return len(self._active) + len(self._waiting)

    def wait_for_capacity(self, timeout: float | None = None) -> bool:
        """Block until fewer than max_sequences requests are admitted or waiting."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._active) + len(self._waiting) < self.max_sequences or self._stopping
                                       or self._refusing,
                                       timeout)

    def stop_serving(self) -> None:
        """The server is stopping: end every request admitted or waiting with on_cancel, and every
        one submitted from now on, so that Triton sees no request in flight and can unload the model."""
        with self._lock:
            self._refusing = True
            self._lock.notify_all()

    def close(self) -> None:
        """Stop the decode loop; unfinished requests get an error."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join()
        for sequence in list(self._active.values()):
            self._end(sequence.request, sequence.tokens, "error", sequence)
            sequence.request.on_error("the generator was unloaded")
        for request, tokens in self._waiting:
            self._end(request, tokens, "error")
            request.on_error("the generator was unloaded")
        self._active.clear()
        self._waiting.clear()

    # -- sampling ------------------------------------------------------------------------------

    def _sampler(self, request: Generation) -> "_Sampler":
        chain = _internals.LlamaSampler()
        if (request.repetition_penalty, request.presence_penalty, request.frequency_penalty) != (1.0, 0.0, 0.0):
            # The binding declares a leading n_vocab that llama.cpp's C function no longer has; passing
            # the window twice is right for either signature (the floats travel in their own registers).
            llama_cpp.llama_sampler_chain_add(chain.sampler, llama_cpp.llama_sampler_init_penalties(
                PENALTY_WINDOW, PENALTY_WINDOW, request.repetition_penalty, request.frequency_penalty,
                request.presence_penalty))
        if request.temperature == 0.0:
            chain.add_greedy()
        else:
            if request.top_k > 0:
                chain.add_top_k(request.top_k)
            if request.top_p < 1.0:
                chain.add_top_p(request.top_p, 1)
            chain.add_temp(request.temperature)
            chain.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if request.seed is None else request.seed % 2**32)
        grammar = self._grammar(request)
        if grammar is None:
            return _Sampler(chain)
        handle = llama_cpp.llama_sampler_init_grammar(self.model.vocab, grammar.encode("utf-8"), b"root")
        if not handle:
            chain.close()
            raise GenerationError(f"the {request.guide_type} guide could not be parsed as a grammar")
        return _Sampler(chain, handle, llama_cpp.llama_vocab_n_tokens(self.model.vocab))

    @staticmethod
    def _grammar(request: Generation) -> str | None:
        if request.guide_type is None:
            return None
        if request.guide_type == "json":
            return llama_grammar.JSON_GBNF
        if not request.guide.strip():
            raise GenerationError(f"{interface.GUIDE.name} is empty for guide type {request.guide_type}")
        if request.guide_type == "ebnf_grammar":
            return request.guide
        try:
            schema = json.loads(request.guide)
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except json.JSONDecodeError as err:
            raise GenerationError(f"{interface.GUIDE.name} is not JSON: {err}") from None
        except jsonschema.SchemaError as err:
            raise GenerationError(f"{interface.GUIDE.name} is not a valid JSON schema: {err.message}") from None
        try:
            return llama_grammar.json_schema_to_gbnf(request.guide)
        except Exception as err:  # the converter raises bare Exceptions and KeyErrors on what it does not support
            raise GenerationError(f"the JSON schema cannot be turned into a grammar: {err}") from None

    # -- the decode loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._waiting or self._active or self._stopping)
                if self._stopping:
                    return
                if self._refusing:
                    for request, tokens in self._waiting:
                        self._end(request, tokens, "cancelled")
                        request.on_cancel()
                    self._waiting.clear()
                    stopping = list(self._active.values())
                else:
                    stopping = []
                    self._admit()
            for sequence in stopping:
                self._finish(sequence, cancelled=True)
            if not self._active:
                continue
            try:
                self._step()
            except Exception as err:  # a llama.cpp failure ends the requests in flight, not the server
                log.exception("decode step failed")
                for sequence in list(self._active.values()):
                    self._finish(sequence, error=f"generation failed: {err}")

    def _admit(self) -> None:
        """Move waiting requests into free sequence slots while the KV cache has room (lock held)."""
        free = [s for s in range(self.max_sequences) if s not in self._active]
        while self._waiting and free:
            request, tokens = self._waiting[0]
            if request.is_cancelled():
                self._waiting.pop(0)
                self._lock.notify_all()  # a place is free: wake execute(), waiting for capacity
                self._end(request, tokens, "cancelled")
                request.on_cancel()
                continue
            if not self._make_room(len(tokens) + request.max_tokens):
                return  # wait for an active sequence to finish
            if self._prefilling_same_start(tokens):
                return  # join once those cells are computed, instead of computing them twice
            self._waiting.pop(0)
            try:
                sampler = self._sampler(request)
            except GenerationError as err:
                self._lock.notify_all()
                self._end(request, tokens, "error")
                request.on_error(str(err))
                continue
            sequence = _Sequence(request=request, seq_id=free.pop(0), tokens=tokens, sampler=sampler)
            self._reuse_prefix(sequence)
            self._active[sequence.seq_id] = sequence
            self._lock.notify_all()

    def _make_room(self, needed: int) -> bool:
        """True if `needed` more cells fit, evicting cached prefixes (least recently used first)."""
        def used():
            active = sum(len(s.tokens) + s.request.max_tokens for s in self._active.values())
            return active + sum(len(p.tokens) for p in self.prefixes)

        for prefix in sorted(self.prefixes, key=lambda p: p.last_used):
            if used() + needed <= self.n_ctx:
                break
            self._drop_prefix(prefix)
        return used() + needed <= self.n_ctx

    def _shared_cells(self, tokens: list[int]) -> list[tuple[int, int, _Prefix | _Sequence]]:
        """(tokens shared, of which already in the KV cache, source) for every prefix slot and every
        prompt in flight that starts like `tokens`: requests that arrive together (an analysis
        fans out prompts with the same instructions) share cells before any slot holds them."""
        sources = []
        for source in [*self.prefixes, *self._active.values()]:
            shared = _common_prefix(source.tokens, tokens)
            if shared >= MIN_PREFIX_REUSE:
                computed = shared if isinstance(source, _Prefix) else min(shared, source.n_past)
                sources.append((shared, computed, source))
        return sources

    def _prefilling_same_start(self, tokens: list[int]) -> bool:
        """True while a prompt in flight that shares more of `tokens` than any cached prefix is
        still computing the shared part (then waiting a step or two saves computing it twice)."""
        sources = self._shared_cells(tokens)
        ready = max((computed for _, computed, _ in sources), default=0)
        return any(computed < min(shared, len(tokens) - 1) and shared > ready for shared, computed, _ in sources)

    def _reuse_prefix(self, sequence: _Sequence) -> None:
        sources = self._shared_cells(sequence.tokens)
        if not sources:
            return
        _, common, best = max(sources, key=lambda item: item[1])
        common = min(common, len(sequence.tokens) - 1)  # the last prompt token is decoded for its logits
        if common < MIN_PREFIX_REUSE:
            return
        llama_cpp.llama_memory_seq_cp(self.context.memory, best.seq_id, sequence.seq_id, 0, common)
        if isinstance(best, _Prefix):
            best.last_used = time.perf_counter()
        sequence.n_past = sequence.n_cached = common

    def _remember_prefix(self, sequence: _Sequence) -> None:
        """Tag a freshly prefilled prompt's cells with a prefix slot for later prompts to reuse."""
        tokens = sequence.tokens
        # Replace the slot of the same prompt family (the longest shared prefix, e.g. the same
        # instructions), so that one kind of prompt does not evict another's; else the least
        # recently used slot.
        slot = max(self.prefixes, key=lambda p: _common_prefix(p.tokens, tokens), default=None)
        if slot is not None and _common_prefix(slot.tokens, tokens) < MIN_PREFIX_REUSE:
            slot = min(self.prefixes, key=lambda p: p.last_used)
        if slot is None or slot.tokens == tokens:
            return
        self._drop_prefix(slot)
        llama_cpp.llama_memory_seq_cp(self.context.memory, sequence.seq_id, slot.seq_id, 0, len(tokens))
        slot.tokens = list(tokens)
        slot.last_used = time.perf_counter()

    def _drop_prefix(self, prefix: _Prefix) -> None:
        llama_cpp.llama_memory_seq_rm(self.context.memory, prefix.seq_id, -1, -1)
        prefix.tokens = []

    def _step(self) -> None:
        """One llama_decode over every active sequence, then sampling and delivery."""
        batch = self.batch.batch
        batch.n_tokens = 0
        sampled: list[tuple[_Sequence, int]] = []  # (sequence, batch index of its logits)

        def add(token: int, sequence: _Sequence, logits: bool) -> None:
            i = batch.n_tokens
            batch.token[i], batch.pos[i] = token, sequence.n_past
            batch.seq_id[i][0], batch.n_seq_id[i], batch.logits[i] = sequence.seq_id, 1, logits
            batch.n_tokens += 1
            sequence.n_past += 1
            if logits:
                sampled.append((sequence, i))

        sequences = sorted(self._active.values(), key=lambda s: s.admitted)
        for sequence in sequences:
            if not sequence.in_prefill:
                add(sequence.next_token, sequence, True)
        for sequence in sequences:
            while sequence.in_prefill and batch.n_tokens < self.n_batch:
                add(sequence.tokens[sequence.n_past], sequence, sequence.n_past == len(sequence.tokens) - 1)

        status = llama_cpp.llama_decode(self.context.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")

        for sequence, index in sampled:
            if sequence.first_token is None:
                sequence.first_token = time.perf_counter()
                self._remember_prefix(sequence)
            token = sequence.sampler.sample(self.context, index)
            self._accept(sequence, token)
        for sequence in list(self._active.values()):
            if sequence.request.is_cancelled():
                self._finish(sequence, cancelled=True)

    def _accept(self, sequence: _Sequence, token: int) -> None:
        request = sequence.request
        # A character whose bytes are not complete when generation ends (max_tokens can fall between
        # the byte-level tokens of one Hangul syllable) is dropped, never sent as U+FFFD.
        if llama_cpp.llama_vocab_is_eog(self.model.vocab, token):
            self._finish(sequence)
            return
        sequence.n_output += 1
        sequence.next_token = token
        sequence.text += sequence.decoder.decode(self._piece(token))
        stop_at = _find_stop(sequence.text, request.stop_words, sequence.n_sent)
        if stop_at is not None:
            sequence.text = sequence.text[:stop_at]
            self._finish(sequence)
            return
        if sequence.n_output >= request.max_tokens:
            self._finish(sequence, truncated=True)
            return
        if request.stream:
            safe = len(sequence.text) - _held_back(sequence.text, request.stop_words)
            if safe > sequence.n_sent:
                request.on_text(sequence.text[sequence.n_sent:safe], sequence.n_output)
                sequence.n_sent = safe

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.model.vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.model.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def _finish(self, sequence: _Sequence, *, truncated: bool = False, cancelled: bool = False,
                error: str | None = None) -> None:
        with self._lock:
            self._active.pop(sequence.seq_id, None)
            self._lock.notify_all()
        llama_cpp.llama_memory_seq_rm(self.context.memory, sequence.seq_id, -1, -1)
        sequence.sampler.close()
        request = sequence.request
        if cancelled:
            self._end(request, sequence.tokens, "cancelled", sequence)
            request.on_cancel()
            return
        if error is None and truncated and request.guide_type is not None:
            error = (f"{interface.MAX_TOKENS.name} ({request.max_tokens}) was reached before the guided output was "
                     f"complete; raise {interface.MAX_TOKENS.name}")
        if error is not None:
            self._end(request, sequence.tokens, "error", sequence)
            request.on_error(error)
            return
        figures = self._end(request, sequence.tokens, "length" if truncated else "stop", sequence)
        request.on_done(sequence.text[sequence.n_sent:], figures)

    def _end(self, request: Generation, tokens: list[int], finish_reason: str,
             sequence: _Sequence | None = None) -> RequestFigures:
        """Report the figures of a request that ends (sequence: its slot, if it was admitted)."""
        first = sequence.first_token if sequence else None
        figures = RequestFigures(
            finish_reason=finish_reason,
            prompt_tokens=len(tokens),
            cached_prompt_tokens=sequence.n_cached if sequence else 0,
            computed_prompt_tokens=min(sequence.n_past, len(tokens)) - sequence.n_cached if sequence else 0,
            output_tokens=sequence.n_output if sequence else 0,
            queue_s=sequence.admitted - request.submitted if sequence else None,
            time_to_first_token_s=first - request.submitted if first is not None else None,
            decode_s=time.perf_counter() - first if first is not None else None,
        )
        try:
            self.on_figures(figures)
        except Exception:  # a figure that cannot be published must not end the requests in flight
            log.exception("reporting a request's figures failed")
        return figures


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _find_stop(text: str, stop_words: list[str], start: int) -> int | None:
    """Index of the earliest stop word in text that ends after `start`, or None."""
    found = [text.find(word, max(0, start - len(word) + 1)) for word in stop_words if word]
    found = [i for i in found if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stop_words: list[str]) -> int:
    """Length of the longest end of `text` that could be the start of a stop word."""
    longest = 0
    for word in stop_words:
        for n in range(min(len(word) - 1, len(text)), longest, -1):
            if word.startswith(text[-n:]):
                longest = n
                break
    return longest
