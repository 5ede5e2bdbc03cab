"""Start the real `tritonserver` (shipped inside the nvidia-pytriton wheel) on the CPU profile.

    python -m reviewlens.local.tritonserver [--grpc-port 8001] [--http-port 8000] [--metrics-port 8002]

Runs the server of the serving venv (.venv-serve, the `serve` extra), with the Python backend
directory the binary expects (library, utils, and the stub built for that venv's Python), on
loopback; waits until every model is READY and says where it listens. Used by `make serve`,
`make demo`, the test fixtures and the benchmarks.
"""
import argparse
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from reviewlens.build_engines.artifacts import missing_served_files
from reviewlens.ensemble import interface
from reviewlens.local import triton_metrics
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY, REPO_ROOT

# The venv tritonserver, its stub and the Python-backend models run from: `make setup` makes it
# with the `serve` extra only, so serving installs and can import no build tooling (torch, transformers).
SERVE_VENV = Path(os.environ.get("REVIEWLENS_SERVE_VENV", REPO_ROOT / ".venv-serve"))
# How long tritonserver gives its models to finish in-flight requests and unload after SIGINT or
# SIGTERM (--exit-timeout-secs); past it the server exits with code 1 without unloading the rest.
EXIT_TIMEOUT_S = 10


@functools.cache
def serving_install(venv: Path) -> tuple[str, Path]:
    """The X.Y of a venv's Python, which the stub must be built for, and the `tritonserver` folder
    of the nvidia-pytriton installed there: the server, its libraries and the stub all come from
    the venv the models run in."""
    python = venv / "bin" / "python3"
    missing = RuntimeError(f"no Python environment with nvidia-pytriton for the served models at {venv}: "
                           "run `make setup`")
    if not python.exists():
        raise missing
    probe = ("import importlib.util, sys; spec = importlib.util.find_spec('pytriton'); "
             "print('%d.%d' % sys.version_info[:2], spec.origin if spec else '')")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.split()
    if len(found) != 2:
        raise missing
    version, package = found
    return version, Path(package).parent / "tritonserver"


def python_backend_dir(version: str, source: Path) -> Path:
    """A backend directory holding `python/` with the stub built for Python `version` (X.Y), from
    the `tritonserver` folder `source` of nvidia-pytriton."""
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    backends = BUILD_DIR / "triton" / f"backends-py{version}"
    target = backends / "python"
    target.mkdir(parents=True, exist_ok=True)
    for path in (source / "backends/python/libtriton_python.so",
                 source / "backends/python/triton_python_backend_utils.py", stub):
        if not (target / path.name).exists():
            shutil.copy2(path, target / path.name)
    return backends


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """count different free loopback ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class TritonServer:
    """One tritonserver process; use as a context manager or call start()/stop()."""
    model_repository: Path = MODEL_REPOSITORY
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    log_path: Path = BUILD_DIR / "triton" / "server.log"
    response_cache: bool = True
    models_venv: Path = SERVE_VENV
    extra_args: list[str] = field(default_factory=list)
    cpus: frozenset[int] | None = None  # the cores the server and its models may run on (as taskset -c); None: all
    process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return triton_metrics.metrics_url(self.host, self.metrics_port)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def command(self) -> list[str]:
        version, source = serving_install(self.models_venv)
        return [
            str(source / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={python_backend_dir(version, source)}",
            *([f"--cache-directory={source / 'caches'}", f"--cache-config=local,size={interface.RESPONSE_CACHE_BYTES}"]
              if self.response_cache else []),
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = serving_install(self.models_venv)[1].parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
        # The stub embeds Python and takes its prefix and site-packages from the first `python3` on
        # PATH: the models import numpy, onnxruntime, tokenizers, llama_cpp and this project from there.
        env["PATH"] = os.pathsep.join([str(self.models_venv / "bin"), env.get("PATH", "")])
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self, timeout: float = 300) -> "TritonServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        env=self.environment(), start_new_session=True, preexec_fn=pin)
        log.close()
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}; "
                                   f"last log lines:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s; last log lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int | None:
        """Stop the server as Ctrl-C does (SIGINT) and return its exit code: 0 once every model has
        unloaded, 1 when the exit timeout expired first. A server that has not exited a few seconds
        after its own exit timeout is killed (exit code -9). None if it was never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=EXIT_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self.start() if self.process is None else self

    def __exit__(self, *exc):
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    args = parser.parse_args()
    missing = missing_served_files(args.model_repository)
    if missing:
        sys.exit(f"error: built models missing in {args.model_repository} ({', '.join(missing)}); run `make build` first")
    server = TritonServer(args.model_repository, args.host, args.grpc_port, args.http_port, args.metrics_port)
    print(f"starting tritonserver (log: {server.log_path}) ...", flush=True)
    server.start()
    print(f"READY: gRPC {server.grpc_url}  HTTP {server.http_url}  "
          f"metrics http://{args.host}:{args.metrics_port}/metrics  models: {', '.join(m.name for m in interface.SERVED)}", flush=True)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.sigwait(stop_signals)
    finally:
        print("stopping tritonserver ...", flush=True)
        server.stop()


if __name__ == "__main__":
    main()
