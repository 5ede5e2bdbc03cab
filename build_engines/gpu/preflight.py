"""The checks every GPU-only build script makes first, and the GPU it builds for.

Engines are specific to the GPU model and to the TensorRT (TensorRT-LLM) version that built them, so
each script asks nvidia-smi which GPU it is on and records it beside the engine. On a machine
without an NVIDIA GPU or the GPU libraries, the scripts stop at once with one line saying what is
missing (sys.exit with a message: exit code 1, no traceback); heavy imports happen only after.
"""
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str                # e.g. "NVIDIA L4"
    compute_capability: str  # e.g. "8.9"

    @property
    def slug(self) -> str:
        """A directory name for engines built on this kind of GPU: "nvidia-l4-sm89"."""
        name = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return f"{name}-sm{self.compute_capability.replace('.', '')}"


def require_gpu(tool: str) -> Gpu:
    """Return the first NVIDIA GPU, or exit with a one-line error naming `tool` if there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        sys.exit(f"error: {tool} needs an NVIDIA GPU, and this machine has no NVIDIA driver (nvidia-smi not found); "
                 "run it on a GPU host or in the Dockerfile.triton image (docker run --gpus all)")
    try:
        result = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        sys.exit(f"error: {tool} needs an NVIDIA GPU, and nvidia-smi failed: {error}")
    rows = [line.split(",") for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not rows or len(rows[0]) != 2:
        reason = (result.stderr or result.stdout).strip().splitlines()
        sys.exit(f"error: {tool} needs an NVIDIA GPU, and nvidia-smi lists none"
                 + (f" ({reason[0]})" if reason else ""))
    name, capability = (field.strip() for field in rows[0])
    return Gpu(name, capability)


def require_module(name: str, tool: str, hint: str):
    """Import and return a module, or exit with a one-line error if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        sys.exit(f"error: {tool} needs the Python module {name} ({error}); {hint}")


def require_package(distribution: str, tool: str, hint: str) -> str:
    """Return the installed version of a Python distribution, or exit with a one-line error."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"error: {tool} needs the Python package {distribution}, which is not installed; {hint}")
