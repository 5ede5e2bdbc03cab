# The client image of the nightly pre-computation (precompute-cronjob.yaml): the reviewlens client
# and CLI with their base dependencies only, from the lock, as tests/test_packaging.py installs
# them in a clean venv (no server, no torch). Not built here (no Docker engine).
#   docker build -f deploy/client.Dockerfile -t reviewlens-client .
FROM python:3.11-slim
WORKDIR /opt/reviewlens
COPY pyproject.toml README.md constraints.txt ./
# pyproject.toml lists every subpackage, so all their folders are copied; only client/ and
# ensemble/interface.py are imported.
COPY client/ client/
COPY ensemble/ ensemble/
COPY build_engines/ build_engines/
COPY local/ local/
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /opt/reviewlens
WORKDIR /
USER 1000
ENTRYPOINT ["reviewlens"]
