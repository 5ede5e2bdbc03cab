"""The Kubernetes manifests of the GPU profile (deploy/), checked offline: never applied here (no
cluster, no GPU). Every resource is validated against the pinned Kubernetes release's OpenAPI
schemas in strict mode (kubernetes-validate: unknown fields are errors), and what the manifests
promise is checked against the code they run: the served model names, the image's paths, the
`reviewlens` CLI and its settings, the adapter's metric names. The readiness probe and the
pre-computation's wrapper script are run for real, against the test session's tritonserver and
/etc/hosts.
"""
import copy
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import typer
import yaml

from reviewlens.client.cli import app
from reviewlens.client.settings import Settings
from reviewlens.ensemble import interface as api
from reviewlens.local.paths import REPO_ROOT
from reviewlens.local.tritonserver import free_port

KUBERNETES_VERSION = "1.33.0"  # the schemas kubernetes-validate 1.37.0 ships for this release
DEPLOY = REPO_ROOT / "deploy"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
ADAPTER_RULES = DEPLOY / "prometheus-adapter-rules.yaml"
MANIFEST_FILES = sorted(set(DEPLOY.glob("*.yaml")) - {KUSTOMIZATION})
# The startup probe's budget, once the init container has built the engines: the entrypoint's
# re-assembly and loading about 15 GB of engine (triton-deployment.yaml has the arithmetic).
STARTUP_BUDGET_S = 15 * 60


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


RESOURCES = [(path.name, doc) for path in MANIFEST_FILES for doc in load(path)]


def resource(kind: str, name: str) -> dict:
    (found,) = [doc for _, doc in RESOURCES if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


DEPLOYMENT = resource("Deployment", "triton")
POD = DEPLOYMENT["spec"]["template"]
(TRITON,) = POD["spec"]["containers"]
(BUILD_ENGINES,) = POD["spec"]["initContainers"]
CRONJOB = resource("CronJob", "precompute")
(PRECOMPUTE,) = CRONJOB["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
ADAPTER = yaml.safe_load(resource("ConfigMap", "prometheus-adapter")["data"]["config.yaml"])
HPA = resource("HorizontalPodAutoscaler", "triton")


def env_of(container: dict) -> dict[str, str]:
    return {var["name"]: var.get("value") for var in container.get("env", [])}


@pytest.mark.parametrize("where, doc", RESOURCES, ids=[f"{where}:{doc['kind']}/{doc['metadata']['name']}"
                                                      for where, doc in RESOURCES])
def test_every_manifest_is_valid_against_the_pinned_kubernetes_schemas(where, doc):
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.33"


def test_the_schema_check_rejects_a_misspelt_field_and_a_wrong_type():
    misspelt = copy.deepcopy(DEPLOYMENT)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = TRITON["readinessProbe"]
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)
    wrong_type = copy.deepcopy(HPA)
    wrong_type["spec"]["minReplicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_adapters_config():
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == sorted(path.name for path in MANIFEST_FILES if path != ADAPTER_RULES)


def test_every_served_model_has_a_readiness_check():
    command = TRITON["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python3", "-c"]
    assert command[3:] == [model.name for model in api.SERVED]


def test_the_readiness_probe_passes_on_a_ready_triton_and_fails_while_a_model_is_not(triton):
    """The probe's own script, run against the test session's real tritonserver."""
    command = TRITON["readinessProbe"]["exec"]["command"]
    assert "127.0.0.1:8000" in command[2]  # the container's HTTP port, moved to the test server's here

    def probe(address: str, names: list[str]) -> int:
        script = command[2].replace("127.0.0.1:8000", address)
        return subprocess.run([sys.executable, "-c", script, *names], capture_output=True, timeout=30).returncode
    names = command[3:]
    assert probe(triton.http_url, names) == 0
    assert probe(triton.http_url, [*names, "a_model_not_loaded"]) != 0
    assert probe(f"127.0.0.1:{free_port()}", names) != 0   # no server there


def test_liveness_and_startup_ask_tritons_health_endpoints():
    assert TRITON["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert TRITON["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_each_container_asks_for_exactly_one_gpu():
    for container in (BUILD_ENGINES, TRITON):
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
        assert {"cpu", "memory"} <= set(resources["requests"])


def test_the_engines_are_built_before_serving_and_the_startup_probe_covers_loading_them():
    assert BUILD_ENGINES["command"][:3] == ["python3", "-m", "reviewlens.build_engines.gpu.repository"]
    # An init container is never probed, so no probe can kill a long engine build halfway.
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(BUILD_ENGINES)
    probe = TRITON["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= STARTUP_BUDGET_S


def test_both_containers_share_the_engine_settings_and_the_pods_repository():
    assert BUILD_ENGINES["envFrom"] == TRITON["envFrom"]
    settings = resource("ConfigMap", TRITON["envFrom"][0]["configMapRef"]["name"])["data"]
    assert settings["GPU_PRECISION"] in ("int8", "fp16")
    assert env_of(BUILD_ENGINES)["GPU_MODEL_REPOSITORY"] == env_of(TRITON)["GPU_MODEL_REPOSITORY"]
    assert "$(GPU_MODEL_REPOSITORY)" in BUILD_ENGINES["command"]
    # On the engines volume, so the repository holds hard links to the engines, not copies.
    engines_mount = {m["name"]: m["mountPath"] for m in TRITON["volumeMounts"]}["engines"]
    assert env_of(TRITON)["GPU_MODEL_REPOSITORY"].startswith(engines_mount + "/")


def dockerfile_env() -> dict[str, str]:
    text = (REPO_ROOT / "Dockerfile.triton").read_text()
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.+)$", text, re.MULTILINE))))


def test_the_volumes_are_mounted_where_the_image_looks_for_them():
    image_env = dockerfile_env()
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in POD["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    for container in (BUILD_ENGINES, TRITON):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert claims[mounts[image_env["REVIEWLENS_ENGINES"]]] == "triton-engines"
        assert claims[mounts[image_env["GENERATOR_CHECKPOINT"]]] == "generator-checkpoint"
    for claim in claims.values():
        resource("PersistentVolumeClaim", claim)


def test_the_triton_image_tag_names_the_ngc_release_the_dockerfile_builds_on():
    text = (REPO_ROOT / "Dockerfile.triton").read_text()
    release = re.search(r"ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:(\d+\.\d+)-trtllm", text)[1]
    trtllm = re.search(r"ARG TRTLLM_VERSION=(\S+)", text)[1]
    images = {image["name"]: image for image in yaml.safe_load(KUSTOMIZATION.read_text())["images"]}
    assert BUILD_ENGINES["image"] == TRITON["image"] == "reviewlens-triton-gpu"
    assert images["reviewlens-triton-gpu"]["newTag"] == f"{release}-trtllm-{trtllm}"


def test_prometheus_scrapes_the_metrics_port():
    annotations = POD["metadata"]["annotations"]
    ports = {port["name"]: port["containerPort"] for port in TRITON["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == 8002


def test_the_services_reach_the_triton_pods_by_their_port_names():
    pod_labels = POD["metadata"]["labels"]
    port_names = {port["name"] for port in TRITON["ports"]}
    for name in ("triton", "triton-headless"):
        spec = resource("Service", name)["spec"]
        assert spec["selector"].items() <= pod_labels.items()
        assert {port["targetPort"] for port in spec["ports"]} <= port_names
        assert {port["port"] for port in spec["ports"] if port["name"] == "grpc"} == {8001}
    assert resource("Service", "triton-headless")["spec"]["clusterIP"] == "None"


def test_the_autoscaler_reads_the_metrics_the_adapter_exposes():
    exposed = {rule["name"]["as"]: rule for rule in ADAPTER["rules"]}
    wanted = [metric["pods"]["metric"]["name"] for metric in HPA["spec"]["metrics"] if metric["type"] == "Pods"]
    assert wanted and set(wanted) <= set(exposed)
    assert HPA["spec"]["scaleTargetRef"]["name"] == DEPLOYMENT["metadata"]["name"]
    queue = exposed["triton_queue_time_per_request_us"]
    series = re.match(r"(\w+)\{", queue["seriesQuery"])[1]
    assert re.search(queue["name"]["matches"], series)
    assert "rate(nv_inference_queue_duration_us{" in queue["metricsQuery"]
    assert "rate(nv_inference_request_success{" in queue["metricsQuery"]


def test_the_cronjob_runs_a_real_precompute_command_with_flags_the_cli_has():
    args = PRECOMPUTE["args"]
    assert args[:2] == ["reviewlens", "precompute"]
    command = typer.main.get_command(app)
    # Parses and type-checks the arguments as the CLI would, without running it; unknown flags raise.
    context = command.commands["precompute"].make_context("precompute", list(args[2:]))
    assert context.params["path"] == Path("/data/reviews.jsonl")
    with pytest.raises(Exception, match="No such option"):
        command.commands["precompute"].make_context("precompute", [*args[2:], "--no-such-flag"])


def test_the_cronjob_settings_are_real_client_settings_reaching_the_services():
    env = {name: value for name, value in env_of(PRECOMPUTE).items() if name.startswith("REVIEWLENS_")}
    fields = {f"REVIEWLENS_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert set(env) <= fields
    settings = Settings.from_env({**env, "REVIEWLENS_URLS": "10.0.0.1:8001,10.0.0.2:8001"}).validate()
    redis = urlparse(settings.redis_url)
    redis_service = resource("Service", redis.hostname)
    assert redis.port in {port["port"] for port in redis_service["spec"]["ports"]}
    resource("Service", env_of(PRECOMPUTE)["TRITON_HEADLESS"])


def run_wrapper(host: str) -> subprocess.CompletedProcess:
    command = PRECOMPUTE["command"]
    shown = [sys.executable, "-c", "import os; print(os.environ['REVIEWLENS_URLS'])"]
    return subprocess.run([*command, *shown], env={"PATH": "/usr/bin:/bin", "TRITON_HEADLESS": host,
                                                    "TRITON_GRPC_PORT": env_of(PRECOMPUTE)["TRITON_GRPC_PORT"]},
                          capture_output=True, text=True, timeout=30)


def test_the_cronjob_wrapper_hands_every_resolved_triton_address_to_the_client():
    result = run_wrapper("localhost")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "127.0.0.1:8001"


def test_the_cronjob_wrapper_stops_when_no_triton_pod_is_ready():
    result = run_wrapper("no-ready-pod.invalid")
    assert result.returncode == 1
    assert "no ready Triton pod behind no-ready-pod.invalid" in result.stderr
