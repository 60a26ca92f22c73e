"""The files under deploy/ parse and agree with each other and with the code, without Docker.

Checked: the dashboard's queries name only metrics the workers and the trainer export; Prometheus
scrapes the compose services at the ports they expose (and ``promtool`` accepts its config);
every image is the locally built one or a pinned official one; every harstream command line
parses with the real CLI parser; every ``HARSTREAM_*`` variable is a real setting; probes,
Services and scrape annotations point at ports the containers expose; the Dockerfile copies
files that exist and runs ``harstream``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import json
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.registry import Registry
from pipeline.cli.commands import registry as registry_command
from pipeline.cli.main import build_parser, main
from pipeline.observability.metrics import TrainerMetrics, WorkerMetrics
from pipeline.settings import (
    SECTIONS,
    TRAINER_SECTIONS,
    load_settings,
    load_trainer_settings,
    variables,
)

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "harstream.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
IMAGE = "harstream:" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
OFFICIAL_IMAGES = {"apache/kafka", "prom/prometheus", "grafana/grafana"}
PINNED_TAG = re.compile(r"v?\d+\.\d+\.\d+")
PORTS = {"run": 9400, "trainer": 9401}
"""the HTTP port of each long-running harstream command (its default)"""
REQUIRED_METRICS = {
    "harstream_samples_total", "harstream_records_total",
    "harstream_event_to_prediction_seconds_bucket", "harstream_step_duration_seconds_bucket",
    "harstream_consumer_lag_records", "harstream_active_devices", "harstream_predictions_total",
    "harstream_model_info", "harstream_swaps_total", "harstream_swap_pause_seconds_bucket",
    "harstream_dead_letters_total", "harstream_trainer_champion_accuracy_ratio",
    "harstream_trainer_candidate_accuracy_ratio", "harstream_trainer_online_accuracy_ratio",
    "harstream_trainer_runs_total", "harstream_trainer_promotions_total",
    "harstream_trainer_rejections_total", "harstream_trainer_training_duration_seconds_bucket",
}  # fmt: skip


# -- loading -----------------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, dict]:
    """The compose services (``x-`` anchors merged in by the YAML loader)."""
    return read_yaml(DEPLOY / "docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    files = sorted((DEPLOY / "k8s").glob("*.yaml"))
    return [d for p in files for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def of_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def pod_containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def values_of(obj: Any, key: str) -> Iterator[Any]:
    """Every value of ``key`` anywhere in a JSON-like tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from values_of(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from values_of(v, key)


def queries(dashboard: dict) -> list[str]:
    """The PromQL of every panel target, annotation and template variable."""
    variables = [v["definition"] for v in dashboard["templating"]["list"]]
    return [*values_of(dashboard["panels"], "expr"),
            *values_of(dashboard["annotations"], "expr"), *variables]  # fmt: skip


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bharstream_\w+", expr))


def harstream_argvs(compose: dict, manifests: list[dict]) -> list[list[str]]:
    """The argv given to the image's ``harstream`` entry point, by compose and by k8s."""
    containers = [c for d in of_kind(manifests, "Deployment") for c in pod_containers(d)]
    return [s["command"] for s in compose.values() if s["image"] == IMAGE] + [
        c["args"] for c in containers if c["image"] == IMAGE
    ]


def container_port(mapping: str | int) -> int:
    """``"127.0.0.1:9402:9400"``, ``"9400"`` or ``9400`` -> 9400."""
    return int(str(mapping).split(":")[-1].split("/")[0])


def exposed(service: dict) -> set[int]:
    return {container_port(p) for p in service.get("expose", []) + service.get("ports", [])}


def parse(argv: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"harstream {' '.join(argv)}: {err.getvalue().strip()}")


# -- Grafana -----------------------------------------------------------------------------------


def test_dashboard_queries_name_only_exported_metrics(dashboard):
    exported = WorkerMetrics().names() | TrainerMetrics().names()
    unknown = {expr: metric_names(expr) - exported for expr in queries(dashboard)}
    assert not {e: names for e, names in unknown.items() if names}


def test_dashboard_has_the_required_panels(dashboard):
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    used = {name for p in panels for t in p["targets"] for name in metric_names(t["expr"])}
    assert used >= REQUIRED_METRICS
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for histogram in (m for m in REQUIRED_METRICS if m.endswith("_bucket")):
        assert any(histogram in e and "histogram_quantile(" in e for e in exprs), histogram
    for metric, label in (("harstream_predictions_total", "activity"),
                          ("harstream_dead_letters_total", "reason")):  # fmt: skip
        assert any(metric in e and f"by ({label})" in e for e in exprs), metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels}
    assert {"Consumer lag", "Activity mix", "Model versions", "Trainer accuracy"} <= titles


def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""
    filled = [q.replace("$__range", "1h").replace("$instance", ".*") for q in queries(dashboard)]
    rules = [{"record": f"dashboard_query_{i}", "expr": q} for i, q in enumerate(filled)
             if not q.startswith("label_values(")]  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(path))


def test_grafana_provisioning_matches_the_dashboard_and_compose(dashboard, compose):
    datasources = read_yaml(PROVISIONING / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert set(values_of(dashboard["panels"], "uid")) == {source["uid"]}
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"]).groups()
    assert int(port) in exposed(compose[host])
    (provider,) = read_yaml(PROVISIONING / "dashboards" / "harstream.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# -- Prometheus --------------------------------------------------------------------------------


def promtool(*args: str) -> None:
    """Run ``promtool`` and require success (it comes with Prometheus; the Makefile installs it)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)"
        )
    done = subprocess.run([found, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_every_harstream_service_at_its_port(compose):
    config = read_yaml(DEPLOY / "prometheus.yml")
    scraped = set()
    for job in config["scrape_configs"]:
        for target in (t for s in job["static_configs"] for t in s["targets"]):
            host, port = target.rsplit(":", 1)
            if host == "localhost":  # Prometheus itself
                continue
            assert host in compose, f"{job['job_name']}: {host} is not a compose service"
            assert int(port) in exposed(compose[host]), f"{target}: not exposed"
            assert job.get("metrics_path", "/metrics") == "/metrics"
            scraped.add(host)
    serving = {n for n, s in compose.items() if s["image"] == IMAGE and s["command"][0] in PORTS}
    assert serving == scraped


def test_promtool_accepts_the_prometheus_config():
    promtool("check", "config", str(DEPLOY / "prometheus.yml"))


def test_prometheus_k8s_config_follows_the_pod_annotations(manifests):
    (job,) = read_yaml(DEPLOY / "prometheus-k8s.yml")["scrape_configs"]
    sources = {s for rule in job["relabel_configs"] for s in rule["source_labels"]}
    (sd,) = job["kubernetes_sd_configs"]
    compose_jobs = {j["job_name"] for j in read_yaml(DEPLOY / "prometheus.yml")["scrape_configs"]}
    for d in of_kind(manifests, "Deployment"):
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        for key in annotations:
            meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[./]", "_", key)
            assert meta in sources, key
        assert d["metadata"]["namespace"] in sd["namespaces"]["names"]
        component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        assert f"harstream-{component}" in compose_jobs  # the same job names on both


# -- images, commands, settings ----------------------------------------------------------------


def test_images_are_built_here_or_pinned_official_ones(compose, manifests):
    pom = ET.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    kafka_version = pom.find("{*}properties/{*}kafka.version").text
    k8s_images = [c["image"] for d in of_kind(manifests, "Deployment") for c in pod_containers(d)]
    for image in [s["image"] for s in compose.values()] + k8s_images:
        if image == IMAGE:
            continue
        repo, _, tag = image.partition(":")
        assert repo in OFFICIAL_IMAGES and PINNED_TAG.fullmatch(tag), image
    assert compose["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    for service in (s for s in compose.values() if s["image"] == IMAGE):
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_harstream_commands_parse_with_the_cli(compose, manifests):
    argvs = harstream_argvs(compose, manifests)
    assert {argv[0] for argv in argvs} >= {"run", "trainer", "registry"}
    for argv in argvs:
        parse(argv)


def test_the_seeding_command_registers_the_bundled_model(compose, manifests, tmp_path, capsys):
    """The init step of compose and k8s, run here with /app mapped to the checkout."""
    seeds = {tuple(a) for a in harstream_argvs(compose, manifests) if a[0] == "registry"}
    (argv,) = seeds  # compose and k8s seed alike
    assert parse(argv).run is registry_command.run_add
    local = [str(ROOT / a.removeprefix("/app/")) if a.startswith("/app/") else a for a in argv]
    local[local.index("--root") + 1] = str(tmp_path)
    args = parse(local)
    assert args.promote and args.if_empty and Path(args.file).is_file()
    for _ in range(2):
        assert main(local) == 0
    assert capsys.readouterr().out.endswith(f"already registered, {args.file} not added\n")
    assert Registry(tmp_path).aliases(args.name) == {"champion": 1}


def setting_variables() -> set[str]:
    """``HARSTREAM_<SECTION>_<KEY>`` of the worker's and the trainer's settings."""
    return variables(SECTIONS) | variables(TRAINER_SECTIONS) | {registry_command.ROOT_ENV}


def test_environment_variables_are_real_settings(compose, manifests):
    names = [n for s in compose.values() for n in s.get("environment", {})]
    names += [e["name"] for d in of_kind(manifests, "Deployment") for c in pod_containers(d)
              for e in c.get("env", [])]  # fmt: skip
    given = {n for n in names if n.startswith("HARSTREAM_")}
    assert "HARSTREAM_HTTP_HOST" in given
    assert given <= setting_variables()


# -- compose -----------------------------------------------------------------------------------


def test_compose_services_listen_where_they_are_checked_and_share_the_registry(compose):
    for name, service in compose.items():
        if service["image"] != IMAGE or service["command"][0] not in PORTS:
            continue
        args = parse(service["command"])
        port = PORTS[service["command"][0]]
        assert service["expose"] == [str(port)], name
        assert service["environment"]["HARSTREAM_HTTP_HOST"] == "0.0.0.0"
        health = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in health, name
        registry = getattr(args, "model.registry", None) or getattr(args, "trainer.registry")
        assert f"registry:{registry}" in service["volumes"], name
        assert service["depends_on"]["registry-init"]["condition"] == (
            "service_completed_successfully"
        )
    workers = [n for n, s in compose.items() if s["image"] == IMAGE and s["command"][0] == "run"]
    assert len(workers) >= 2


# -- Kubernetes --------------------------------------------------------------------------------


def test_k8s_manifests_agree_on_namespace_names_and_volumes(manifests):
    (namespace,) = of_kind(manifests, "Namespace")
    for m in manifests:
        if m["kind"] not in ("Namespace", "Kustomization"):
            assert m["metadata"]["namespace"] == namespace["metadata"]["name"], m["kind"]
    claims = {m["metadata"]["name"]: m for m in of_kind(manifests, "PersistentVolumeClaim")}
    maps = {m["metadata"]["name"] for m in of_kind(manifests, "ConfigMap")}
    replicas = {}
    for d in of_kind(manifests, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert d["spec"]["selector"]["matchLabels"].items() <= (
            d["spec"]["template"]["metadata"]["labels"].items()
        )
        volumes = {v["name"]: v for v in spec["volumes"]}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in v:
                assert v["configMap"]["name"] in maps
        for c in pod_containers(d):
            assert {m["name"] for m in c["volumeMounts"]} <= volumes.keys()
            assert "limits" in c["resources"] and "requests" in c["resources"]
        replicas[pod_containers(d)[-1]["args"][0]] = d["spec"]["replicas"]
    assert replicas == {"run": 2, "trainer": 1}
    assert claims["harstream-registry"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_k8s_probes_services_and_annotations_use_exposed_ports(manifests):
    deployments = of_kind(manifests, "Deployment")
    for d in deployments:
        (container,) = d["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(ports.values()) == {PORTS[container["args"][0]]}

        def resolve(port: str | int, ports=ports) -> int:
            return ports[port] if isinstance(port, str) else port

        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/healthz")):  # fmt: skip
            get = container[probe]["httpGet"]
            assert get["path"] == path and resolve(get["port"]) in ports.values()
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) in ports.values()
        assert annotations["prometheus.io/path"] == "/metrics"
    for service in of_kind(manifests, "Service"):
        selector = service["spec"]["selector"].items()
        (d,) = [d for d in deployments
                if selector <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        (container,) = d["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for p in service["spec"]["ports"]:
            target = p["targetPort"]
            assert (ports[target] if isinstance(target, str) else target) == p["port"]


def test_k8s_settings_files_load_and_match_the_pods(manifests, tmp_path):
    (config_map,) = of_kind(manifests, "ConfigMap")
    for d in of_kind(manifests, "Deployment"):
        (container,) = d["spec"]["template"]["spec"]["containers"]
        args = parse(container["args"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        file = Path(args.config)
        assert file.parent == Path(mount["mountPath"])
        path = tmp_path / file.name
        path.write_text(config_map["data"][file.name])
        if container["args"][0] == "run":
            settings = load_settings(path, environ={})
            registry, http = settings.model.registry, settings.http
        else:
            sections = load_trainer_settings(path, environ={})
            registry, http = sections.trainer.registry, sections.http
            assert sections.trainer.state_dir in mounts
        assert registry in mounts
        assert http.port == container["ports"][0]["containerPort"]


# -- image -------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_copies_what_exists_and_runs_harstream(compose):
    steps = dockerfile()
    args = {instruction: arg for instruction, arg in steps}  # the last of each kind
    assert args["FROM"] == "python:3.11-slim"
    assert json.loads(args["ENTRYPOINT"]) == ["harstream"]
    assert {int(p) for p in args["EXPOSE"].split()} == set(PORTS.values())
    assert args["USER"] not in ("root", "0")
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p and not p.startswith("#")]  # fmt: skip
    copied = []
    for instruction, arg in steps:
        if instruction == "COPY":
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source, p) for p in ignored), source
                copied.append(source)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"pyproject.toml", "harstream", "streams", "models", "pipeline"} <= set(copied)
    assert "dashboard/*" in packages["package-data"]["pipeline.observability"]
    seeding = compose["registry-init"]["command"]
    (asset,) = [a for a in seeding if a.endswith(".keras")]
    assert args["WORKDIR"] == "/app" and (ROOT / asset.removeprefix("/app/")).is_file()
    for excluded in (".venv", ".kafka", "deploy/kafka/libs", "models-out", "**/__pycache__"):
        assert excluded in ignored
