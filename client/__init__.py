"""Thin Python client over Triton gRPC."""
