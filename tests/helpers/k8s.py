"""Offline stand-ins for everything between `kubectl apply` and torchrun's argument parser, each a model of named
source, so tests can follow a rendered manifest to the torchrun command line each pod ends up running:

- the PyTorchJob CRD's schema (vendored, deploy/k8s/schemas/) and the training operator's admission webhook,
- the operator's environment for each pod (training-operator v1.9.0, pkg/controller.v1/pytorch/envvar.go and
  master.go, the path without an elasticPolicy),
- the Job controller's JOB_COMPLETION_INDEX for an Indexed Job's pod,
- the kubelet's $(VAR) expansion of a container's command and args
  (kubernetes third_party/forked/golang/expansion/expand.go),
- torchrun's reading of its command line: train/preflight.py's model of torch 2.0.1's (the images' torch), the one
  parser the preflight itself runs, held to torch's own by tests/integration/test_torchrun_model.py.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping

import jsonschema
import yaml

from tests.helpers.cli import ROOT
from train import preflight as PREFLIGHT

CRD_FILE = ROOT / "deploy" / "k8s" / "schemas" / "kubeflow.org_pytorchjobs.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- the PyTorchJob CRD and the operator's webhook ---------------------------------------------------------------

def vendored_crd() -> tuple[str, str, dict]:
    """(sha256 the header records, sha256 of the lines after the header, the CRD)."""
    lines = CRD_FILE.read_text().splitlines(keepends=True)
    count = next(number for number, line in enumerate(lines) if not line.startswith("#"))
    recorded = re.search(r"sha256 ([0-9a-f]{64})", "".join(lines[:count])).group(1)
    body = "".join(lines[count:])
    return recorded, hashlib.sha256(body.encode()).hexdigest(), yaml.load(body, Loader=_Loader)


def strict(schema: dict) -> dict:
    """The schema with unknown fields refused, as the API server's strict field validation (kubectl's default
    since 1.25) refuses them: every object schema that lists properties and neither allows nor preserves
    others gets additionalProperties: false."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_validator(crd: dict) -> jsonschema.Draft4Validator:
    """The served version's openAPIV3Schema (OpenAPI 3.0's dialect is JSON Schema draft 4's), made strict."""
    version = next(v for v in crd["spec"]["versions"] if v["served"] and v["storage"])
    return jsonschema.Draft4Validator(strict(version["schema"]["openAPIV3Schema"]))


def webhook_errors(job: dict) -> list[str]:
    """What the operator's admission webhook refuses (v1.9.0 pkg/webhooks/pytorch/pytorchjob_webhook.go): a name
    that is no DNS-1035 label, a replica type other than Master or Worker, a replica without a container named
    `pytorch` or with an image missing, a Master with replicas other than 1, a Worker with fewer than 1."""
    errors = []
    name = job["metadata"]["name"]
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
        errors.append(f"metadata.name {name!r} is no DNS-1035 label")
    for kind, replica in job["spec"]["pytorchReplicaSpecs"].items():
        containers = replica["template"]["spec"].get("containers", [])
        if kind not in ("Master", "Worker"):
            errors.append(f"{kind}: not a replica type")
        if not any(container["name"] == "pytorch" for container in containers):
            errors.append(f"{kind}: no container named pytorch")
        errors += [f"{kind}: {c['name']} has no image" for c in containers if not c.get("image")]
        if kind == "Master" and replica.get("replicas") != 1:
            errors.append("Master: replicas must be 1")
        if kind == "Worker" and replica.get("replicas", 1) < 1:
            errors.append("Worker: replicas must be at least 1")
    return errors


# --- what the operator, the Job controller and the kubelet do to a container -------------------------------------

def operator_env(job: dict, replica: str, index: int) -> dict[str, str]:
    """The variables training-operator v1.9.0 appends to every container of pod <job>-<replica>-<index>, for a job
    with a Master and no elasticPolicy (setPodEnv; MasterEnvVarGenerator). Defaults as the operator applies them:
    1 replica, port 23456, nprocPerNode "auto"."""
    spec = job["spec"]
    assert "elasticPolicy" not in spec, "the elastic path is not modelled"
    replicas = spec["pytorchReplicaSpecs"]
    total = sum(r.get("replicas", 1) for r in replicas.values())
    nproc = spec.get("nprocPerNode", "auto")
    env = {"PYTHONUNBUFFERED": "1"}
    if "Master" in replicas:
        port = next((p["containerPort"] for c in replicas["Master"]["template"]["spec"]["containers"]
                     if c["name"] == "pytorch" for p in c.get("ports", []) if p.get("name") == "pytorchjob-port"),
                    23456)
        master = f"{job['metadata']['name']}-master-0"
        env.update(MASTER_PORT=str(port), PET_MASTER_PORT=str(port), MASTER_ADDR=master, PET_MASTER_ADDR=master)
        rank = index + 1 if replica == "Worker" else index
        world = total * (int(nproc) if nproc.isdigit() else 1)
        env.update(WORLD_SIZE=str(world), RANK=str(rank), PET_NODE_RANK=str(rank))
    env["PET_NPROC_PER_NODE"] = nproc
    env["PET_NNODES"] = str(total)
    return env


def indexed_job_env(index: int) -> dict[str, str]:
    """The Job controller gives each container of an Indexed Job's pod its index (from the pod's
    batch.kubernetes.io/job-completion-index annotation) as JOB_COMPLETION_INDEX."""
    return {"JOB_COMPLETION_INDEX": str(index)}


def container_env(container: dict, added: Mapping[str, str]) -> dict[str, str]:
    """The container's own `env` values, then what controllers appended; a later entry wins, as in the kubelet."""
    own = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return {**own, **added}


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion of command and args: $(NAME) becomes the variable's value, or stays as written when
    the container has no such variable; $$ is a literal $; any other $ is left alone."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
            out.append("$" + following)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def argv(container: dict, env: Mapping[str, str]) -> list[str]:
    """The command line the container's process gets: command then args, each expanded."""
    return [expand(item, env) for item in container.get("command", []) + container.get("args", [])]


# --- torchrun ----------------------------------------------------------------------------------------------------

def parse_torchrun(command: list[str], env: Mapping[str, str]):
    """torchrun's reading of `command` (torchrun and its arguments) in `env`, by train/preflight.py's model of torch
    2.0.1's torchrun (tests/integration/test_torchrun_model.py holds it to torch's own): a preflight Launch, or
    PreflightUsage (a ValueError) for a command line torchrun refuses."""
    assert command[0] == "torchrun", command
    return PREFLIGHT.parse_torchrun(command[1:], env)


def preflight_and_torchrun(command: list[str], env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """A container command that runs train/preflight.py in front of torchrun, read by the preflight's own argument
    reading: (the peers it checks, the torchrun command it execs)."""
    assert command[:2] == ["python3", "train/preflight.py"], command
    return PREFLIGHT.split_command(command[2:], env)


def example_dir(name: str) -> Path:
    return ROOT / "deploy" / "k8s" / "examples" / name


def pod_templates(document: dict) -> list[tuple[str, dict]]:
    """(where, pod template) of each pod a Job or a PyTorchJob makes: the Job's template, each replica's."""
    if document["kind"] == "Job":
        return [("Job", document["spec"]["template"])]
    if document["kind"] == "PyTorchJob":
        return [(kind, replica["template"]) for kind, replica in document["spec"]["pytorchReplicaSpecs"].items()]
    return []


# --- sigstore policy-controller ------------------------------------------------------------------------------------

POLICY_CRD_FILE = ROOT / "deploy" / "k8s" / "schemas" / "policy.sigstore.dev_clusterimagepolicies.yaml"
END_OF_HEADER = "# ---- end of header ----\n"


def vendored_policy_crd() -> tuple[str, str, dict]:
    """(sha256 the header records, sha256 of the text after the end-of-header line, the CRD). The upstream file
    starts with comments of its own, so the header ends at an explicit line."""
    header, _, body = POLICY_CRD_FILE.read_text().partition(END_OF_HEADER)
    recorded = re.search(r"sha256 ([0-9a-f]{64})", header).group(1)
    return recorded, hashlib.sha256(body.encode()).hexdigest(), yaml.load(body, Loader=_Loader)


def served_validator(crd: dict, version: str) -> jsonschema.Draft4Validator:
    """A served version's openAPIV3Schema, made strict (policy-controller serves v1alpha1 and v1beta1), with the
    fields the API server gives every custom resource whether its schema names them or not (this one does not)."""
    found = next(v for v in crd["spec"]["versions"] if v["name"] == version and v["served"])
    schema = found["schema"]["openAPIV3Schema"]
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return jsonschema.Draft4Validator(strict({**schema, "properties": {**implicit, **schema["properties"]}}))


def policy_glob_match(glob: str, image: str) -> bool:
    """policy-controller v0.15.1's glob match (pkg/apis/glob/glob.go): `*` is any run of characters but `/`, `**`
    any run at all, the whole reference must match; a tag or digest reference is matched as written (it is fully
    qualified already when it names a registry host)."""
    if not re.fullmatch(r"[a-zA-Z0-9-_:/*.@]+", glob):
        raise ValueError(f"invalid glob {glob!r}")
    pattern = glob.replace(".", r"\.").replace("**", "#").replace("*", "[^/]*").replace("#", ".*")
    return re.fullmatch(pattern, image) is not None
