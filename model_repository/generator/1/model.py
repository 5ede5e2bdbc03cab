# The code lives in the project package so the engine can be tested and benchmarked outside Triton too.
from reviewlens.ensemble.generator_model import TritonPythonModel  # noqa: F401
