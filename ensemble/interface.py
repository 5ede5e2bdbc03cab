"""The served interface, in one place: model names, tensor names, datatypes, dims, label order.

Every side reads this module and never spells a served name again: the Python models in
ensemble/, the committed configs (a test checks model_repository/*/config.pbtxt against it), the
GPU repository, the client, perf and the tests. It imports nothing from Triton, so the client
library carries it without the server.

Datatypes are Triton's wire names ("BYTES", "FP32", ...); a config spells BYTES as TYPE_STRING.
Dims exclude the batch dimension, as in a config with max_batch_size > 0.
"""
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Tensor:
    """One input or output of a served model."""
    name: str
    datatype: str
    dims: tuple[int, ...] = (-1,)
    optional: bool = False

    @property
    def config_type(self) -> str:
        """The data_type a config.pbtxt gives this tensor."""
        return "TYPE_STRING" if self.datatype == "BYTES" else f"TYPE_{self.datatype}"


@dataclass(frozen=True)
class Model:
    """A served model's name and tensors."""
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def input(self, name: str) -> Tensor:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> Tensor:
        return next(t for t in self.outputs if t.name == name)


# The size of Triton's response cache, which both ensembles use (`response_cache` in their
# configs), for every server of either profile: each launcher (local/tritonserver.py, the GPU
# image's build_engines/gpu/entrypoint.sh) reads it here.
RESPONSE_CACHE_BYTES = 256 * 1024 * 1024
# Texts per request: the configs' max_batch_size, and the TensorRT profiles' largest batch.
MAX_BATCH_SIZE = 128
# A text over this many UTF-8 bytes is refused (the tokenizers, the generator and the client check it).
MAX_TEXT_BYTES = 1_000_000
# What is left of a text once whitespace, control and format characters (zero-width spaces, bidi
# marks, ...) are removed: a text with nothing left is empty, and refused as such by every side.
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def is_blank(text: str) -> bool:
    """Whether a text has no visible character (only whitespace, control or format characters)."""
    return all(char.isspace() or unicodedata.category(char) in _INVISIBLE for char in text)


# The default classifier's label order (its id2label); a user's checkpoint brings its own, which
# the server returns by name (labels.json), so clients compare names, never indices.
SENTIMENT_LABELS = ("negative", "positive")

TEXT = Tensor("TEXT", "BYTES", (1,))
TRUNCATED = Tensor("TRUNCATED", "BOOL", (1,))
INPUT_IDS = Tensor("input_ids", "INT64")
ATTENTION_MASK = Tensor("attention_mask", "INT64")
TOKENS = (INPUT_IDS, ATTENTION_MASK)
LOGITS = Tensor("logits", "FP32")
LABEL = Tensor("LABEL", "BYTES", (1,))
CONFIDENCE = Tensor("CONFIDENCE", "FP32", (1,))
PROBS = Tensor("PROBS", "FP32")
EMBEDDING = Tensor("EMBEDDING", "FP32")

# The ensembles clients call, and their composing steps.
SENTIMENT = Model("sentiment", (TEXT,), (LABEL, CONFIDENCE, PROBS, TRUNCATED))
EMBED = Model("embed", (TEXT,), (EMBEDDING, TRUNCATED))
SENTIMENT_TOKENIZER = Model("sentiment_tokenizer", (TEXT,), (*TOKENS, TRUNCATED))
CLASSIFIER = Model("classifier", TOKENS, (LOGITS,))
SENTIMENT_POSTPROCESS = Model("sentiment_postprocess", (LOGITS,), (LABEL, CONFIDENCE, PROBS))
EMBED_TOKENIZER = Model("embed_tokenizer", (TEXT,), (*TOKENS, TRUNCATED))
ENCODER = Model("encoder", TOKENS, (EMBEDDING,))

# The generator: tensorrtllm_backend's `ensemble` names and types, which the CPU generator mirrors,
# so clients call `generator` the same way on both profiles.
TEXT_INPUT = Tensor("text_input", "BYTES")
MAX_TOKENS = Tensor("max_tokens", "INT32", (1,))
TEMPERATURE = Tensor("temperature", "FP32", (1,), optional=True)
TOP_K = Tensor("top_k", "INT32", (1,), optional=True)
TOP_P = Tensor("top_p", "FP32", (1,), optional=True)
RANDOM_SEED = Tensor("random_seed", "UINT64", (1,), optional=True)
REPETITION_PENALTY = Tensor("repetition_penalty", "FP32", (1,), optional=True)
PRESENCE_PENALTY = Tensor("presence_penalty", "FP32", (1,), optional=True)
FREQUENCY_PENALTY = Tensor("frequency_penalty", "FP32", (1,), optional=True)
STOP_WORDS = Tensor("stop_words", "BYTES", optional=True)
STREAM = Tensor("stream", "BOOL", (1,), optional=True)
GUIDE_TYPE = Tensor("guided_decoding_guide_type", "BYTES", (1,), optional=True)
GUIDE = Tensor("guided_decoding_guide", "BYTES", (1,), optional=True)
TEXT_OUTPUT = Tensor("text_output", "BYTES")
NUM_INPUT_TOKENS = Tensor("num_input_tokens", "INT32", (1,))
NUM_OUTPUT_TOKENS = Tensor("num_output_tokens", "INT32", (1,))
GENERATOR = Model(
    "generator",
    (TEXT_INPUT, MAX_TOKENS, TEMPERATURE, TOP_K, TOP_P, RANDOM_SEED, REPETITION_PENALTY, PRESENCE_PENALTY,
     FREQUENCY_PENALTY, STOP_WORDS, STREAM, GUIDE_TYPE, GUIDE),
    (TEXT_OUTPUT, NUM_INPUT_TOKENS, NUM_OUTPUT_TOKENS))
# Values of guided_decoding_guide_type: the CPU serves these three ("ebnf_grammar" in llama.cpp's
# GBNF); TensorRT-LLM also has "regex".
GUIDE_TYPES = ("json", "json_schema", "ebnf_grammar")
# The generator config's parameter naming the chat format its model expects (clients render it).
CHAT_TEMPLATE_PARAMETER = "chat_template"

# GPU profile only: the step of the TensorRT-LLM `generator` ensemble that emits the request switches
# tensorrt_llm needs for the outputs the CPU generator always returns (an ensemble cannot hold
# constants; ensemble/generator_options.py).
GENERATOR_OPTIONS = Model("generator_options", (MAX_TOKENS,), (
    Tensor("RETURN_NUM_INPUT_TOKENS", "BOOL", (1,)), Tensor("RETURN_NUM_OUTPUT_TOKENS", "BOOL", (1,))))

# The models a client calls: the ones whose READY state means the server can serve.
SERVED = (SENTIMENT, EMBED, GENERATOR)
# Every model of the CPU repository, ensembles and composing steps.
CPU_MODELS = (SENTIMENT, SENTIMENT_TOKENIZER, CLASSIFIER, SENTIMENT_POSTPROCESS,
              EMBED, EMBED_TOKENIZER, ENCODER, GENERATOR)


# The generator engine's figures, published as Triton custom metrics (pb_utils.MetricFamily) on the
# server's metrics endpoint, http://host:metrics_port/metrics; tests and benchmarks read them there
# (local/triton_metrics.py), never from the server log.
@dataclass(frozen=True)
class Metric:
    """A metric family a served model publishes, with the values of its one label, if any."""
    name: str
    kind: str  # pb_utils.MetricFamily's kind: "COUNTER" or "HISTOGRAM"
    description: str
    label: str | None = None
    label_values: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # a histogram's upper bounds

    @property
    def label_sets(self) -> list[dict[str, str]]:
        """The labels of each series of the family: one per label value, or one unlabelled."""
        return [{self.label: value} for value in self.label_values] if self.label else [{}]


# How a request left the engine: "stop" (end of text or a stop word), "length" (max_tokens),
# "cancelled" (the client went away or cancelled), "error" (e.g. max_tokens cut a guided output).
FINISH_REASONS = ("stop", "length", "cancelled", "error")
# Where a prompt token's KV cells came from (the `source` label of GENERATOR_PREFILL_TOKENS).
PREFILL_COMPUTED = "computed"     # computed by the request's own prefill
PREFILL_REUSED = "prefix_cache"   # copied from a cached prompt prefix, or from a prompt in flight with the same start
PREFILL_SOURCES = (PREFILL_COMPUTED, PREFILL_REUSED)
# Seconds on a 2-core CPU: prefill runs ~75 tokens/s, decode ~25 tokens/s.
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0)

GENERATOR_REQUESTS = Metric(
    "reviewlens_generator_requests_total", "COUNTER", "Requests the generator engine ended, by finish reason",
    "finish_reason", FINISH_REASONS)
GENERATOR_OUTPUT_TOKENS = Metric(
    "reviewlens_generator_output_tokens_total", "COUNTER",
    "Tokens the generator engine generated, by the finish reason of their request", "finish_reason", FINISH_REASONS)
GENERATOR_PREFILL_TOKENS = Metric(
    "reviewlens_generator_prefill_tokens_total", "COUNTER",
    "Prompt tokens put in the KV cache: computed by prefill, or reused from the prefix cache", "source", PREFILL_SOURCES)
GENERATOR_QUEUE_SECONDS = Metric(
    "reviewlens_generator_queue_seconds", "HISTOGRAM",
    "Time a request waited in the generator engine for a sequence slot, before its first prefill step",
    buckets=SECONDS_BUCKETS)
GENERATOR_TIME_TO_FIRST_TOKEN_SECONDS = Metric(
    "reviewlens_generator_time_to_first_token_seconds", "HISTOGRAM",
    "Time from a request's arrival in the generator engine to its first output token (queue and prefill)",
    buckets=SECONDS_BUCKETS)
GENERATOR_DECODE_SECONDS = Metric(
    "reviewlens_generator_decode_seconds", "HISTOGRAM",
    "Time from a request's first output token to its last", buckets=SECONDS_BUCKETS)
GENERATOR_METRICS = (GENERATOR_REQUESTS, GENERATOR_OUTPUT_TOKENS, GENERATOR_PREFILL_TOKENS, GENERATOR_QUEUE_SECONDS,
                     GENERATOR_TIME_TO_FIRST_TOKEN_SECONDS, GENERATOR_DECODE_SECONDS)
