# The code lives in the project package so every tokenizer step runs the same, tested module.
from reviewlens.ensemble.tokenizer import TritonPythonModel  # noqa: F401
