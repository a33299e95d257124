"""The Kubernetes manifests, offline: `kubectl kustomize` renders them, `kubernetes-validate
--strict` checks them against the Kubernetes schemas, and their promises are checked one by one.
KServe's resources are custom (CRDs): checked structurally, their pod parts strictly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from service.settings import Settings

from .integration.server import ROOT

BASE = ROOT / "deploy/kubernetes"
KSERVE = BASE / "kserve"
SECRET = BASE / "secret.example.yaml"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is not installed")
        pytest.skip("kubectl is not installed")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(documents: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(tool), "--strict", str(path)], capture_output=True, text=True, timeout=120
    )


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for doc in documents:
        assert doc["kind"] not in kinds, f"two {doc['kind']}s"
        kinds[doc["kind"]] = doc
    return kinds


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return by_kind(render(BASE))


def test_the_base_renders_and_validates_strictly(tmp_path: Path) -> None:
    documents = render(BASE)
    assert {doc["kind"] for doc in documents} == {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    }  # fmt: skip
    result = validate([*documents, yaml.safe_load(SECRET.read_text())], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 5, result.stdout


def test_strict_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    documents = render(BASE)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    result = validate(documents, tmp_path)
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_deployment_probes_replicas_and_graceful_termination(base) -> None:
    deployment = base["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert deployment["spec"]["replicas"] >= 2
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    graceful = re.search(
        r"^graceful_timeout = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), re.M
    )
    assert graceful is not None
    pause = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > int(graceful.group(1)) + pause


def test_deployment_runs_non_root_on_a_read_only_root_with_tmpfs_where_it_writes(base) -> None:
    pod = base["Deployment"]["spec"]["template"]["spec"]
    main = container(base["Deployment"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in main["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= set(mounts)
    assert all("emptyDir" in volume for volume in mounts.values())
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])


def test_settings_and_token_come_from_the_example_secrets_keys(base) -> None:
    env = {item["name"]: item for item in container(base["Deployment"])["env"]}
    secret = yaml.safe_load(SECRET.read_text())
    for name in ("NEURON_STORE_URL", "NEURON_ADMIN_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert set(env) - {"NEURON_STORE_URL", "NEURON_ADMIN_TOKEN"} <= {
        name.upper() for name in (f"NEURON_{field}" for field in Settings.model_fields)
    }


def test_the_example_secret_holds_placeholders_the_service_refuses() -> None:
    values = yaml.safe_load(SECRET.read_text())["stringData"]
    assert all("REPLACE-ME" in value for value in values.values())
    with pytest.raises(ValidationError):
        Settings(admin_token=values["admin-token"], store_url=values["store-url"])


def test_service_hpa_and_pdb_select_the_deployments_pods(base) -> None:
    labels = base["Deployment"]["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(base["Deployment"]["spec"]["selector"]["matchLabels"])
    assert selects(base["Service"]["spec"]["selector"])
    assert selects(base["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = base["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        base["Deployment"]["metadata"]["name"],
    )
    assert base["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert base["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_every_pod_is_scraped_by_prometheus(base) -> None:
    annotations = base["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    port = container(base["Deployment"])["ports"][0]["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_kserve_inference_service_is_a_v2_custom_predictor_of_the_image(
    base, tmp_path: Path
) -> None:
    kserve = by_kind(render(KSERVE))
    service, runtime = kserve["InferenceService"], kserve["ServingRuntime"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert service["spec"]["predictor"]["minReplicas"] >= 2
    (predictor,) = runtime["spec"]["containers"]
    assert predictor["image"] == container(base["Deployment"])["image"]
    # The runtime's pod parts are plain Kubernetes: validate them strictly inside a Pod.
    result = validate_in_pod("kserve-predictor-check", predictor, runtime, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def validate_in_pod(name: str, predictor: dict, runtime: dict, tmp_path: Path) -> Any:
    """A ServingRuntime's container validated strictly inside a plain Pod, with its volumes."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [predictor], "volumes": runtime["spec"]["volumes"]},
    }
    return validate([pod], tmp_path)


def test_every_probe_path_is_a_route_of_the_service(base, app) -> None:
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    runtime = by_kind(render(KSERVE))["ServingRuntime"]
    probes = [container(base["Deployment"]), runtime["spec"]["containers"][0]]
    paths = {
        probe[kind]["httpGet"]["path"]
        for probe in probes
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
        if kind in probe
    }
    assert paths == {"/readyz", "/healthz", "/v2/health/ready", "/v2/health/live"}
    assert paths <= routes


KSERVE_GRPC = BASE / "kserve-grpc"


def image_grpc_port() -> int:
    """The port of the image's NEURON_GRPC_BIND (the Dockerfile's ENV)."""
    found = re.search(r"NEURON_GRPC_BIND=[^\s:]+:(\d+)", (ROOT / "Dockerfile").read_text())
    assert found is not None, "the Dockerfile sets no NEURON_GRPC_BIND"
    return int(found.group(1))


def test_the_deployment_and_service_carry_grpc_to_the_images_port(base) -> None:
    ports = {p["name"]: p for p in container(base["Deployment"])["ports"]}
    assert ports["grpc"]["containerPort"] == image_grpc_port()
    service = {p["name"]: p for p in base["Service"]["spec"]["ports"]}
    assert service["grpc"]["targetPort"] == "grpc"
    assert service["grpc"]["appProtocol"] == "kubernetes.io/h2c"  # gRPC without TLS


def test_kserve_grpc_service_routes_h2c_to_the_images_grpc_port(base, tmp_path: Path) -> None:
    rest = by_kind(render(KSERVE))["ServingRuntime"]
    kserve = by_kind(render(KSERVE_GRPC))
    service, runtime = kserve["InferenceService"], kserve["ServingRuntime"]
    model = service["spec"]["predictor"]["model"]
    assert (model["runtime"], model["protocolVersion"]) == (runtime["metadata"]["name"], "v2")
    assert runtime["metadata"]["name"] != rest["metadata"]["name"]
    (predictor,) = runtime["spec"]["containers"]
    # One port, named h2c as Knative wants of HTTP/2, on the image's gRPC port; probed there.
    assert predictor["ports"] == [
        {"name": "h2c", "containerPort": image_grpc_port(), "protocol": "TCP"}
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert predictor[probe]["tcpSocket"]["port"] == image_grpc_port()
    # The same image, settings and store as the REST runtime: both serve the same versions.
    (rest_predictor,) = rest["spec"]["containers"]
    assert predictor["image"] == rest_predictor["image"] == container(base["Deployment"])["image"]
    assert predictor["env"] == rest_predictor["env"]
    assert not any(f.get("autoSelect") for f in runtime["spec"]["supportedModelFormats"])
    result = validate_in_pod("kserve-grpc-predictor-check", predictor, runtime, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
