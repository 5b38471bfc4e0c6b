"""deploy/k8s/ without a cluster: every manifest validates against the Kubernetes JSON schema
(kubernetes-validate ships the schemas of each release in its wheel: nothing is fetched), strict,
so a misspelt field fails; then what the schema cannot know: the ConfigMap's TOML loads through
the gateway's own load_settings and agrees with the ports, probes and mounts of the Deployment,
Services select the pod, the Secret holds every key the pod reads, and the pod's grace period
outlasts the gateway's shutdown."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import Settings, load_settings, worker_count
from tests.deploy.test_files import CONFIG_IN_IMAGE, DEPLOY, ROOT, parse_dockerfile

K8S = DEPLOY / "k8s"
# The Kubernetes release whose schema the manifests are held to (bundled by kubernetes-validate).
KUBERNETES_VERSION = "1.37.0"
# The standard AWS SDK variables the S3 store's credentials come from.
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

Manifest = dict[str, Any]


def documents(name: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def manifests() -> list[tuple[str, Manifest]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in documents(path.name)
    ]


def one(kind: str, name: str | None = None) -> Manifest:
    (found,) = [
        m
        for _, m in manifests()
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    return found


def quantity(text: str) -> float:
    """A Kubernetes resource quantity (1, 500m, 512Mi, 2Gi, 1G) as a number."""
    number, unit = re.fullmatch(r"([\d.]+)([a-zA-Z]*)", text).groups()  # type: ignore[union-attr]
    factor = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20,
              "Gi": 2**30}[unit]  # fmt: skip
    return float(number) * factor


@pytest.fixture(scope="module")
def pod() -> Manifest:
    spec: Manifest = one("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Manifest) -> Manifest:
    (gateway,) = pod["containers"]
    assert isinstance(gateway, dict)
    return gateway


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The ConfigMap's gateway.toml as the gateway loads it (no GATEWAY_* environment: the
    Deployment sets none)."""
    toml = one("ConfigMap")["data"]["gateway.toml"]
    path = tmp_path_factory.mktemp("k8s") / "gateway.toml"
    path.write_text(toml)
    return load_settings(config_file=path, env={})


@pytest.mark.parametrize(("name", "manifest"), manifests(), ids=lambda v: str(v)[:40])
def test_manifest_validates_against_the_kubernetes_schema(name: str, manifest: Manifest) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_field(container: Manifest) -> None:
    broken = one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(broken))  # a copy
    probe = broken["spec"]["template"]["spec"]["containers"][0].pop("livenessProbe")
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = probe
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = documents("kustomization.yaml")
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    # Applying the example would overwrite real credentials with placeholders.
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "secret.example.yaml",
    }


def test_configmap_settings_load_through_the_gateway(settings: Settings) -> None:
    assert settings.host == "0.0.0.0"
    assert settings.log_format == "json"
    assert not settings.hls_dir and not settings.tls_cert  # S3 store, TLS at the ingress
    # The S3 store and the public base URL of segments and parts (issue 17, part 2).
    s3_url = getattr(settings, "hls_s3_url", None)
    assert s3_url is not None, "hls_s3_url is not a setting yet: merge branch s3"
    assert re.fullmatch(r"s3://[a-z0-9.-]+(/[^/]+)+", s3_url), s3_url
    assert getattr(settings, "s3_endpoint_url", "").startswith("https://")
    assert getattr(settings, "hls_public_base_url", "").startswith("https://")
    # One address (the cache or ingress) asks for every viewer.
    assert settings.http_max_requests_per_ip == 0


def test_container_ports_probes_and_services_match_the_settings(
    settings: Settings, container: Manifest
) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"rtmp": settings.rtmp_port, "http": settings.http_port}
    assert all(p["protocol"] == "TCP" for p in container["ports"])
    for kind in ("livenessProbe", "readinessProbe"):
        probe = container[kind]["httpGet"]
        assert probe["path"] == "/healthz" and ports[probe["port"]] == settings.http_port, kind
    # Liveness gives a store outage time (a restart loses the window); readiness reacts first.
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    assert (
        ready["periodSeconds"] * ready["failureThreshold"]
        < live["periodSeconds"] * live["failureThreshold"]
    )
    services = {s["metadata"]["name"]: s for _, s in manifests() if s["kind"] == "Service"}
    (rtmp,) = services["gateway-rtmp"]["spec"]["ports"]
    assert (rtmp["protocol"], rtmp["port"], ports[rtmp["targetPort"]]) == ("TCP", 1935, 1935)
    assert services["gateway-rtmp"]["spec"]["type"] in ("LoadBalancer", "NodePort")
    (http,) = services["gateway-http"]["spec"]["ports"]
    assert ports[http["targetPort"]] == settings.http_port


def test_selectors_match_the_pod_labels() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    for _, service in manifests():
        if service["kind"] == "Service":
            assert service["spec"]["selector"].items() <= labels.items()
    # One replica: a stream is served by the process its publisher reached.
    assert deployment["spec"]["replicas"] == 1


def test_image_and_command_are_the_dockerfiles(container: Manifest, pod: Manifest) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container["image"] == f"rtmp-hls-gateway:{version}"
    assert "-t rtmp-hls-gateway" in (DEPLOY / "Dockerfile").read_text().splitlines()[0]
    runtime = parse_dockerfile((DEPLOY / "Dockerfile").read_text())[-1]
    (cmd,) = runtime.all("CMD")
    assert container["args"] == yaml.safe_load(cmd) == ["run", "--config", CONFIG_IN_IMAGE]
    assert runtime.all("ENTRYPOINT") == ['["gateway"]'] and "command" not in container
    # The image's non-root user.
    (useradd,) = [r for r in runtime.all("RUN") if "useradd" in r]
    uid = int(re.search(r"--uid (\d+)", useradd)[1])  # type: ignore[index]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"]


def test_config_is_mounted_where_the_image_reads_it(container: Manifest, pod: Manifest) -> None:
    directory, file = CONFIG_IN_IMAGE.rsplit("/", 1)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = one("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert file in configmap["data"] and mount.get("readOnly") is True
    # No GATEWAY_* variables: they would win over the mounted file without it saying so.
    assert not [e for e in container.get("env", []) if e["name"].startswith("GATEWAY_")]


def test_aws_credentials_come_from_the_secret(container: Manifest) -> None:
    secret = one("Secret")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(refs) >= AWS_VARIABLES
    for variable, ref in refs.items():
        assert variable.startswith("AWS_")
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert ref.get("optional", False) is (variable not in AWS_VARIABLES)


def test_resources_and_graceful_termination(
    settings: Settings, container: Manifest, pod: Manifest
) -> None:
    requests = container["resources"]["requests"]
    assert quantity(requests["cpu"]) >= 1 and quantity(requests["memory"]) > 0
    limit = quantity(container["resources"]["limits"]["memory"])
    assert limit >= quantity(requests["memory"])
    # One core per worker process; "auto" would count the node's cores, not the pod's.
    assert settings.workers != "auto"
    assert worker_count(settings) <= quantity(requests["cpu"])
    # The memory copy of the window (one per worker) fits under the limit.
    assert worker_count(settings) * settings.hls_memory_max_bytes < limit
    assert "cpu" not in container["resources"]["limits"]
    # SIGTERM: E-RTMP publishers get reconnect_request_wait, then playlists end and HTTP
    # drains within shutdown_timeout; SIGKILL only after that.
    shutdown = settings.reconnect_request_wait + settings.shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] > shutdown + 5
    assert one("Deployment")["spec"]["strategy"]["type"] == "Recreate"
