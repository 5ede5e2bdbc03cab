"""The GPU profile's build code: TensorRT plans, the TensorRT-LLM engine, the GPU model configs and
the repository the image's entrypoint assembles. Only fp16.py and model_configs.py run without a GPU."""
