"""Build the served artifacts: data, the fine-tuned classifier, ONNX exports, INT8 versions, reports."""
