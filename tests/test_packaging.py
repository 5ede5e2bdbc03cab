"""Packaging by role: the client installs alone and analyses against the real server; the served
models run in the serving venv, which carries no build tooling."""
import json
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import psutil
import pytest

from reviewlens.local.paths import REPO_ROOT
from reviewlens.local.tritonserver import SERVE_VENV

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
BUILD_TOOLING = ("torch", "transformers", "sentence_transformers")
SERVER_STACK = (*BUILD_TOOLING, "onnxruntime", "llama_cpp", "pytriton")
MODEL_IMPORTS = ("numpy", "onnxruntime", "tokenizers", "jsonschema", "llama_cpp", "reviewlens.ensemble")


def importable(python: Path, modules: tuple[str, ...]) -> list[str]:
    """Which of the modules the given interpreter can import."""
    probe = f"import importlib.util as u; print(','.join(m for m in {modules!r} if u.find_spec(m)))"
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    return found.split(",") if found else []


def test_every_package_folder_is_in_the_distribution():
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {".".join((package, *init.parent.relative_to(REPO_ROOT / folder).parts))
               for package, folder in setuptools["package-dir"].items()
               for init in (REPO_ROOT / folder).rglob("__init__.py")}
    assert folders == set(setuptools["packages"])


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A clean venv holding this project with its base dependencies only, pinned by the lock."""
    root = tmp_path_factory.mktemp("client")
    # Built from a copy: pip builds in the source tree, which would leave build/ and *.egg-info there.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.tmp"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    venv.create(root / "venv", with_pip=True)
    subprocess.run([str(root / "venv/bin/python"), "-m", "pip", "install", "-q",
                    "-c", str(REPO_ROOT / "constraints.txt"), str(source)], check=True)
    return root / "venv"


@pytest.mark.slow
def test_the_client_installs_without_the_server_stack(client_venv):
    assert importable(client_venv / "bin/python", SERVER_STACK) == []


@pytest.mark.slow
def test_the_installed_cli_analyses_reviews_against_the_real_server(client_venv, triton, redis_server, tmp_path):
    cli = str(client_venv / "bin/reviewlens")
    assert "analyze" in subprocess.run([cli, "--help"], capture_output=True, text=True, check=True).stdout
    reviews = tmp_path / "reviews.jsonl"
    texts = ("A warm, funny film with a great cast.", "Far too long and dull.")
    reviews.write_text("".join(json.dumps({"entity_id": "packaged", "entity_name": "Packaged Movie", "text": t}) + "\n"
                               for t in texts))
    run = subprocess.run([cli, "analyze", str(reviews), "--url", triton.grpc_url, "--redis", redis_server.url,
                          "--json", "--run-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (result,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert result["entity_id"] == "packaged" and len(result["reviews"]) == len(texts)


def test_the_serving_venv_has_what_the_models_import_and_no_build_tooling():
    assert importable(SERVE_VENV / "bin/python", MODEL_IMPORTS) == list(MODEL_IMPORTS)
    assert importable(SERVE_VENV / "bin/python", BUILD_TOOLING) == []


def test_the_served_models_run_in_the_serving_venv(triton):
    stubs = [p for p in psutil.Process(triton.process.pid).children() if p.name() == "triton_python_backend_stub"]
    assert stubs
    for stub in stubs:
        libraries = {m.path for m in stub.memory_maps() if ".so" in m.path}
        assert any(Path(path).is_relative_to(SERVE_VENV.resolve()) for path in libraries), stub.cmdline()
        assert not any(Path(path).is_relative_to(sys.prefix) for path in libraries), stub.cmdline()
