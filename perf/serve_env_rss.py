"""Memory of the served models by the Python they run in: the build venv (.venv: torch,
transformers, sentence-transformers beside the models' packages) against the serving venv
(.venv-serve: the `serve` extra only, what `make setup` gives tritonserver).

    .venv/bin/python perf/serve_env_rss.py      # about 3 minutes: two server starts

The same model repository is served twice, one environment at a time; the resident set size (RSS)
of tritonserver and of each Python-backend stub process is taken once every model is READY and
again after one request to each model a client calls.
"""
import sys
import time
from pathlib import Path

import psutil

from harness import results
from reviewlens.client.sync import SyncClient
from reviewlens.local.paths import BUILD_DIR
from reviewlens.local.tritonserver import SERVE_VENV, TritonServer, free_port

PHASES = ("after load", "after one request each")
STUB = "triton_python_backend_stub"


def stubs(server: TritonServer) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.process.pid).children(recursive=True) if p.name() == STUB]


def process_rss_mib(server: TritonServer) -> dict[str, float]:
    """RSS in MiB of tritonserver and of each model's stub process (named by its model)."""
    rss = {"tritonserver": psutil.Process(server.process.pid).memory_info().rss}
    for stub in stubs(server):  # argv[1] is the model's model_repository/<model>/1/model.py
        rss[Path(stub.cmdline()[1]).parent.parent.name] = stub.memory_info().rss
    return {name: round(value / 2**20, 1) for name, value in sorted(rss.items())}


def venvs_loaded(server: TritonServer, candidates: tuple[Path, ...]) -> list[str]:
    """Which of the venvs the stubs map shared libraries from: checks the stubs ran where asked."""
    paths = {Path(m.path) for stub in stubs(server) for m in stub.memory_maps() if ".so" in m.path}
    return [results.repo_relative(v) for v in candidates if any(p.is_relative_to(v.resolve()) for p in paths)]


def size_on_disk_mib(venv: Path) -> float:
    return round(sum(f.lstat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20)


def request_each_model(url: str) -> None:
    with SyncClient(url) as client:
        client.sentiment(["A warm, funny film."])
        client.embed(["A warm, funny film."])
        client.generate(client.chat_prompt([{"role": "user", "content": "Say hello."}]), max_tokens=4)


def measure(args, out) -> dict:
    environments, venvs = {}, (Path(sys.prefix), SERVE_VENV)
    for venv in venvs:
        server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                              models_venv=venv, log_path=BUILD_DIR / "triton" / "perf_serve_env_rss_server.log")
        with server:
            time.sleep(args.settle)
            loaded = process_rss_mib(server)
            request_each_model(server.grpc_url)
            time.sleep(args.settle)
            environments[results.repo_relative(venv)] = {
                **dict(zip(PHASES, (loaded, process_rss_mib(server)))),
                "stubs_load_from": venvs_loaded(server, venvs), "size_on_disk_mib": size_on_disk_mib(venv)}
    return {"environments": environments, "settle_s": args.settle}


def markdown(report: dict) -> str:
    environments = report["environments"]
    columns = [(venv, phase) for venv in environments for phase in PHASES]
    processes = sorted({p for phases in environments.values() for phase in PHASES for p in phases[phase]})
    lines = results.header(report, "RSS of the served models by environment",
                           f"RSS in MiB of tritonserver and its Python-backend stub processes, {report['settle_s']} s "
                           "after each phase, on")
    lines += ["| process | " + " | ".join(f"`{venv}` {phase}" for venv, phase in columns) + " |",
              "|---" * (len(columns) + 1) + "|"]
    for process in (*processes, "total"):
        cells = [environments[venv][phase].get(process) if process != "total"
                 else sum(environments[venv][phase].values()) for venv, phase in columns]
        lines.append(f"| {process} | " + " | ".join("-" if c is None else f"{c:,.0f}" for c in cells) + " |")
    old, new = list(environments)
    change = {p: sum(environments[new][p].values()) - sum(environments[old][p].values()) for p in PHASES}
    lines += ["", f"`{new}` minus `{old}`: " + ", ".join(f"{change[p]:+,.0f} MiB {p}" for p in PHASES) + ". "
              "RSS counts a shared library in every process that maps it. The stubs mapped their libraries from " +
              "; ".join(f"`{', '.join(e['stubs_load_from'])}` with `{venv}` on PATH ({e['size_on_disk_mib']:,.0f} MiB "
                        "on disk)" for venv, e in environments.items()) + ".", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    environments = report["environments"]
    results.bar_chart(path, "RSS of the served models (MiB, all processes)",
                      [(f"MiB, {phase}", {venv: sum(e[phase].values()) for venv, e in environments.items()})
                       for phase in PHASES])


def arguments(parser) -> None:
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each reading (default 5)")


if __name__ == "__main__":
    results.main("serve_env_rss", measure, markdown, plot, arguments)
