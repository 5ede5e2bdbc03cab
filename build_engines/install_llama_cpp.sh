#!/usr/bin/env bash
# Install llama-cpp-python (the CPU generator's runtime) into the given venv's python; the other
# arguments go to that `pip install` (make setup passes `-c constraints.txt`, which pins its
# dependencies).
#
# PyPI has only its sdist: compiling it takes about 6 minutes on 2 cores, so the built wheel is
# kept in $REVIEWLENS_CACHE/wheels/<python>-<cpu>/ and later installs are instant. llama.cpp is
# compiled for the host CPU (GGML_NATIVE), so the cache key includes the CPU's feature flags: a
# wheel built on another CPU is never reused.
set -euo pipefail
PY=${1:?usage: install_llama_cpp.sh PYTHON [PIP-INSTALL-ARGS...]}
shift
# The version is the lock's (constraints.txt, beside pyproject.toml), so it is written once.
VERSION=$(sed -n 's/^llama-cpp-python==//p' "$(dirname "$0")/../constraints.txt")
[ -n "$VERSION" ] || { echo "error: constraints.txt pins no llama-cpp-python" >&2; exit 1; }

if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$VERSION')" 2>/dev/null; then
  exit 0
fi
cache=${REVIEWLENS_CACHE:-$HOME/.cache/reviewlens}
pytag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
cpu=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
wheels=$cache/wheels/$pytag-$cpu
wheel=$(ls "$wheels"/llama_cpp_python-$VERSION-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  echo "compiling llama-cpp-python $VERSION (about 6 min on 2 cores, once; cached in $wheels)"
  mkdir -p "$wheels"
  tmp=$(mktemp -d "$wheels/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip wheel --no-deps "llama-cpp-python==$VERSION" -w "$tmp"
  mv "$tmp"/llama_cpp_python-$VERSION-*.whl "$wheels"/
  wheel=$(ls "$wheels"/llama_cpp_python-$VERSION-*.whl | head -1)
fi
echo "installing $wheel"
"$PY" -m pip install -q "$@" "$wheel"
