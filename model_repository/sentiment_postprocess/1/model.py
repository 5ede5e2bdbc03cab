from reviewlens.ensemble.postprocess import TritonPythonModel  # noqa: F401
