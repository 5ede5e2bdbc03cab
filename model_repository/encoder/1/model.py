# The code lives in the project package so classifier and encoder run the same, tested module.
from reviewlens.ensemble.onnx_model import TritonPythonModel  # noqa: F401
