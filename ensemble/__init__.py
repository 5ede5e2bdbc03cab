"""The ensembles' composing Python-backend models (tokenizer, ONNX runners, postprocess) and the server launcher."""
