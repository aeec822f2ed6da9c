"""`./dev k8s`: manifests that run train/train.py under torchrun on Kubernetes, one pod per node.

One job in two forms. A Kubeflow PyTorchJob: the training operator creates the Master and Worker pods and a
Service for each, and gives every pod its PET_* environment (node count, node rank, master address and port, and
processes per node from `nprocPerNode`). An Indexed Job with a headless Service, for clusters without the
operator: the completion index is the node rank and pod <job>-0, reached as <job>-0.<service>, is the master.

Both use torchrun's static rendezvous: the world size is fixed and node rank 0, the Master or pod 0, hosts the
store, so global rank 0 (the one that logs and writes runs/) is always in that pod; c10d assigns node ranks
itself and ignores --node-rank. The images hold no training code, so the pods run a job image built FROM the
pushed torchdev image with train/ added (`job_dockerfile`); the manifests name it by digest.

Both are locked down for a namespace that enforces the Pod Security Standards' "restricted" profile (every
container, the init container too: the image's user by number, no privilege escalation, no capability, the
runtime's seccomp profile; no service account token), ask for CPU and memory (requests, no limits), and come with
a NetworkPolicy that lets only the job's own pods in: the rendezvous store and NCCL/gloo are unauthenticated and
use ephemeral ports, so every port is open between the job's pods and none to anything else; out, they reach each
other and DNS.

With --policy-key, a sigstore policy-controller ClusterImagePolicy (torchdev.admission) goes beside them: the
pushed torchdev images run only when signed with the key and attested, the job image only when signed with it.

Rendering is pure: a TrainJob in, plain dicts out; commands.k8s writes them as YAML.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import yaml

from torchdev import admission, trust
from torchdev.engine import ImageRef
from torchdev.errors import STATE, USAGE, Problem, TorchdevError, UsageError
from torchdev.files import input_text
from torchdev.grammar import dns_label_problem, reference_problem
from torchdev.options import words
from torchdev.profile import (GIB, KUBERNETES, ContainerProfile, SharedMemory, kubernetes_container, kubernetes_pod,
                              kubernetes_quantity, kubernetes_security_context)
from torchdev.records import RecordError, push_record_path, read_push_record

PYTORCHJOB_PORT = 23456
"""The training operator's default `pytorchjob-port`: its MASTER_PORT and PET_MASTER_PORT name this port."""
RENDEZVOUS_PORT = 29500
"""torchrun's default --master-port, for the Indexed Job."""
DNS_WAIT_S = 300
"""How long the Indexed Job's pods wait for <job>-0.<service> to resolve (the operator's own init container waits
for the Master's name the same way)."""
NAME_MAX = 40
"""Pod, Service and hostname names add up to '-worker-NN' to the job's name and must stay within 63 characters."""
PREFLIGHT = ("python3", "train/preflight.py")
"""What each pod runs in front of torchrun: checks the node and waits for the rendezvous host and the peer pods,
one line per problem, then execs torchrun with the args unchanged (train/README.md, "Across nodes")."""
WORKDIR = "/workspace"
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
CPU_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
         "Ti": 1 << 40}
OBJECT_MAX = 1_000_000
"""Bytes one rendered object may take: etcd refuses a request over 1.5 MiB (its default), and an object is stored with
more than its YAML; clusters with a smaller limit exist, none with a larger default."""
NODES_MAX = 100_000
"""An Indexed Job's completions and parallelism may be at most 100000."""
PER_NODE_MAX = 1024
"""Processes or GPUs per node: more than any node has; beyond it a typo, not a job."""
DEFAULT_SHM = kubernetes_quantity(KUBERNETES.shm.size)

BAD_NAME = Problem("--name {name}: not {what}", "use lower-case letters, digits and '-', starting with a letter, at "
                   "most {limit} characters (it names pods, Services and hostnames)", UsageError, USAGE)
NOT_BY_DIGEST = Problem("--image {image}: not {what}", "name the job image by digest, NAME@sha256:<64 hex> (`docker "
                        "push` prints it), so every node runs the same bytes", UsageError, USAGE)
TOO_FEW = Problem("--{option} {value}: at least {minimum}", "give {minimum} or more", UsageError, USAGE)
NPROC_WITH_GPUS = Problem("--nproc {nproc} with --gpus {gpus}: each process trains on its own GPU (cuda:LOCAL_RANK)",
                          "leave --nproc out", UsageError, USAGE)
BAD_QUANTITY = Problem("--{option} {value}: {what} must be a Kubernetes quantity", "write one such as {example}",
                       UsageError, USAGE)
TOO_LARGE_OBJECT = Problem("the {kind} for {file} would take {size} bytes, more than the {limit} a Kubernetes API "
                           "server takes", "shorten --train-args, or use fewer --nodes", UsageError, USAGE)
NO_KEY_FILE = Problem("{option} {path}: no such public key file", "name cosign.pub (`cosign generate-key-pair` "
                      "writes it)", UsageError, USAGE)
NOT_PUSHED = Problem("no pushed {image} image recorded ({path})", "run `./dev push --variant {image}` first; the job "
                     "image is built FROM it", TorchdevError, STATE)
PUSH_RECORD_BAD = Problem("{error}", "run `./dev push --variant {image}` to write it again", TorchdevError, STATE)
NO_DIGEST_RECORDED = Problem("{path} names no image by digest", "run `./dev push --variant {image}` again",
                             TorchdevError, STATE)
MEMORY_PER_PROCESS = 4 * GIB
"""The default memory request is this per training process plus the /dev/shm emptyDir (memory the pod is charged
for as it fills): a model, its optimizer state and a DataLoader's batches on the host side of a GPU, or on CPU."""
INIT_REQUESTS = {"cpu": "10m", "memory": "64Mi"}
"""The init container's: it only waits for a DNS name."""
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


@dataclass(frozen=True)
class TrainJob:
    """What every pod of the job runs: the image (by digest), how many nodes, processes and GPUs per node, and what
    each pod requests."""

    name: str
    image: str
    nodes: int
    nproc_per_node: int
    gpus_per_node: int
    cpu: str
    """CPU each pod requests (a Kubernetes quantity: 8, 500m)."""
    memory: str
    """Memory each pod requests (32Gi)."""
    shm_size: str = DEFAULT_SHM
    train_args: tuple[str, ...] = ("--task", "mlp")

    @property
    def device(self) -> str:
        """cuda when the pod gets GPUs, so a pod scheduled without one fails at once instead of training on CPU."""
        return "cuda" if self.gpus_per_node else "cpu"

    @property
    def service(self) -> str:
        """The Indexed Job's headless Service; its pods are <name>-<index>.<service>."""
        return self.name

    @property
    def master_host(self) -> str:
        return f"{self.name}-0.{self.service}"

    @property
    def profile(self) -> ContainerProfile:
        """torchdev.profile.KUBERNETES with this job's /dev/shm size."""
        return replace(KUBERNETES, shm=SharedMemory(quantity_bytes(self.shm_size)))


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity (2Gi, 1.5G) in bytes, rounded up as the API server rounds it."""
    number, unit = QUANTITY.match(quantity).groups()
    return math.ceil(Fraction(number) * UNITS[unit])


def default_requests(nproc_per_node: int, shm_size: str) -> tuple[str, str]:
    """CPU and memory a pod requests unless told: a core per training process (more for DataLoader workers), and
    MEMORY_PER_PROCESS per process plus the /dev/shm emptyDir."""
    return str(nproc_per_node), kubernetes_quantity(nproc_per_node * MEMORY_PER_PROCESS + quantity_bytes(shm_size))


def train_job(*, name: str, image: str, nodes: int, gpus_per_node: int, nproc_per_node: int | None = None,
              shm_size: str = DEFAULT_SHM, train_args: str = "--task mlp", cpu: str | None = None,
              memory: str | None = None) -> TrainJob:
    """A TrainJob from command-line values, or a UsageError naming the value to change."""
    problem = dns_label_problem(name, letter_first=True, max_length=NAME_MAX)
    if problem:
        raise BAD_NAME(name=name, what=problem, limit=NAME_MAX)
    problem = reference_problem(image, digest_required=True)
    if problem:
        raise NOT_BY_DIGEST(image=image, what=problem)
    if nodes < 1:
        raise TOO_FEW(option="nodes", value=nodes, minimum=1)
    if gpus_per_node < 0:
        raise TOO_FEW(option="gpus", value=gpus_per_node, minimum=0)
    if gpus_per_node and nproc_per_node not in (None, gpus_per_node):
        raise NPROC_WITH_GPUS(nproc=nproc_per_node, gpus=gpus_per_node)
    nproc = gpus_per_node or nproc_per_node or 1
    if nproc < 1:
        raise TOO_FEW(option="nproc", value=nproc, minimum=1)
    if not QUANTITY.match(shm_size) or not quantity_bytes(shm_size):
        raise BAD_QUANTITY(option="shm-size", value=shm_size, what="a size for /dev/shm", example="2Gi or 512Mi")
    if cpu is not None and (not CPU_QUANTITY.match(cpu) or not Fraction(cpu.rstrip("m"))):
        raise BAD_QUANTITY(option="cpu", value=cpu, what="CPUs each pod requests", example="8 or 500m")
    if memory is not None and (not QUANTITY.match(memory) or not quantity_bytes(memory)):
        raise BAD_QUANTITY(option="memory", value=memory, what="memory each pod requests", example="32Gi")
    default_cpu, default_memory = default_requests(nproc, shm_size)
    return TrainJob(name=name, image=image, nodes=nodes, nproc_per_node=nproc, gpus_per_node=gpus_per_node,
                    shm_size=shm_size, train_args=words("--train-args", train_args), cpu=cpu or default_cpu,
                    memory=memory or default_memory)


def torchrun_args(*, nnodes: str, node_rank: str, nproc_per_node: str, master_addr: str, master_port: str,
                  job: TrainJob) -> list[str]:
    """torchrun's flags, then the trainer and its flags. The static backend is named, not left to the default, so
    a PET_RDZV_BACKEND the operator sets (for an elasticPolicy) cannot switch it to c10d behind the flags' back."""
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--nproc-per-node={nproc_per_node}",
            "--rdzv-backend=static", f"--master-addr={master_addr}", f"--master-port={master_port}",
            "train/train.py", "--device", job.device, *job.train_args]


def preflight_command(peers: list[str]) -> list[str]:
    """The container's command: the preflight, told every pod's DNS name (a pod's name resolves only once it runs,
    so a pod that never starts is named, not waited for in silence; each pod skips its own), then torchrun."""
    return [*PREFLIGHT, *([f"--peers={','.join(peers)}"] if len(peers) > 1 else []), "torchrun"]


def _container(job: TrainJob, *, name: str, args: list[str], port: dict, peers: list[str]) -> dict:
    """The training container: requests for CPU and memory (no limits: a memory limit below what a step needs
    kills the job; sites that want limits set them by LimitRange), GPUs as a limit (extended resources are)."""
    resources: dict = {"requests": {"cpu": job.cpu, "memory": job.memory}}
    if job.gpus_per_node:
        resources["limits"] = {"nvidia.com/gpu": job.gpus_per_node}
    return {"name": name, "image": job.image, "workingDir": WORKDIR, "command": preflight_command(peers),
            "args": args, "ports": [port], "resources": resources, **kubernetes_container(job.profile)}


def _pod_spec(job: TrainJob, container: dict, **extra) -> dict:
    """The pod around its container, as the container profile says (torchdev.profile.kubernetes_pod: a real PID 1,
    /dev/shm a memory emptyDir)."""
    return {**extra, **kubernetes_pod(job.profile, [container])}


def labels(job: TrainJob) -> dict[str, str]:
    return {"app.kubernetes.io/name": "torchdev-train", "app.kubernetes.io/instance": job.name}


def network_policy(job: TrainJob) -> dict:
    """Only the job's own pods reach the job's pods, on every port: the rendezvous store (its fixed port) and
    NCCL/gloo (ephemeral ports) are unauthenticated and trust whoever connects. Out, the pods reach each other and
    DNS (port 53 anywhere: cluster DNS or a node-local cache); nothing else, so a data store the training reads needs
    a rule added. Applies as soon as the cluster's network plugin enforces NetworkPolicy (most do; kubenet and
    flannel alone do not)."""
    own_pods = {"podSelector": {"matchLabels": labels(job)}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": job.name, "labels": labels(job)},
            "spec": {"podSelector": {"matchLabels": labels(job)}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [own_pods]}],
                     "egress": [{"to": [own_pods]}, {"ports": [dict(port) for port in DNS_PORTS]}]}}


def pytorchjob(job: TrainJob) -> dict:
    """The Kubeflow PyTorchJob (kubeflow.org/v1): one Master (node rank 0) and nodes-1 Workers. The container must
    be named `pytorch` and its port `pytorchjob-port`: the operator reads both to set MASTER_PORT. torchrun's flags
    read the operator's PET_* variables through Kubernetes' $(VAR) expansion: a variable that is missing stays
    literal and torchrun refuses it, where leaving the flags to torchrun's own PET_* defaults would quietly start
    every pod as a one-node job."""
    args = torchrun_args(nnodes="$(PET_NNODES)", node_rank="$(PET_NODE_RANK)",
                         nproc_per_node="$(PET_NPROC_PER_NODE)", master_addr="$(PET_MASTER_ADDR)",
                         master_port="$(PET_MASTER_PORT)", job=job)

    # The operator gives each pod a Service of the pod's own name, <job>-master-0 and <job>-worker-<i>.
    peers = [f"{job.name}-master-0", *[f"{job.name}-worker-{i}" for i in range(job.nodes - 1)]]

    def replica(count: int) -> dict:
        port = {"name": "pytorchjob-port", "containerPort": PYTORCHJOB_PORT}
        return {"replicas": count, "restartPolicy": "Never",
                "template": {"metadata": {"labels": labels(job)},
                             "spec": _pod_spec(job, _container(job, name="pytorch", args=list(args), port=port,
                                                               peers=peers))}}

    replicas = {"Master": replica(1), **({"Worker": replica(job.nodes - 1)} if job.nodes > 1 else {})}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": job.name, "labels": labels(job)},
            "spec": {"nprocPerNode": str(job.nproc_per_node), "runPolicy": {"cleanPodPolicy": "Running"},
                     "pytorchReplicaSpecs": replicas}}


def wait_for_master(job: TrainJob) -> dict:
    """An init container that waits until <job>-0.<service> resolves: the name exists in DNS only once pod 0 has an
    address (publishNotReadyAddresses spares it the wait for readiness), and a store client that cannot resolve its
    master may give up before then; the operator puts the same wait in front of a PyTorchJob's Workers. No `$` in
    the script: Kubernetes would read `$(...)` in a command as a variable reference."""
    script = f"until getent hosts {job.master_host}; do echo waiting for {job.master_host}; sleep 2; done"
    return {"name": "wait-for-master", "image": job.image,
            "command": ["timeout", str(DNS_WAIT_S), "sh", "-c", script],
            "resources": {"requests": dict(INIT_REQUESTS)},
            "securityContext": kubernetes_security_context(job.profile)}


def indexed_job(job: TrainJob) -> list[dict]:
    """The headless Service and the Indexed Job, without the operator: `completions` pods run at once, pod i gets
    hostname <job>-i and JOB_COMPLETION_INDEX=i (the node rank), and pod 0 is the master. A failed pod fails the
    job (backoffLimit 0): the static rendezvous cannot take a replacement node into a running group."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": job.service, "labels": labels(job)},
               "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels(job),
                        "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}}
    args = torchrun_args(nnodes=str(job.nodes), node_rank="$(JOB_COMPLETION_INDEX)",
                         nproc_per_node=str(job.nproc_per_node), master_addr=job.master_host,
                         master_port=str(RENDEZVOUS_PORT), job=job)
    port = {"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}
    peers = [f"{job.name}-{index}.{job.service}" for index in range(job.nodes)]
    pod = _pod_spec(job, _container(job, name="train", args=args, port=port, peers=peers), subdomain=job.service,
                    restartPolicy="Never", initContainers=[wait_for_master(job)])
    batch = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job.name, "labels": labels(job)},
             "spec": {"completionMode": "Indexed", "completions": job.nodes, "parallelism": job.nodes,
                      "backoffLimit": 0, "template": {"metadata": {"labels": labels(job)}, "spec": pod}}}
    return [service, batch]


def pushed_reference(reports_dir: Path, image: str) -> str:
    """The pushed image's first tag, pinned by digest (reports/push/<image>.json, written by `./dev push`)."""
    path = push_record_path(reports_dir, image)
    if not os.path.lexists(path):
        raise NOT_PUSHED(image=image, path=path)
    try:
        references = read_push_record(path).references
    except RecordError as error:
        raise PUSH_RECORD_BAD(error=error, image=image) from None
    if not references or not DIGEST.match(references[0]):
        raise NO_DIGEST_RECORDED(path=path, image=image)
    return references[0]


STARTUP_FILES = ("smoke/smoke_contract.py", "smoke/startup_checks.py")
"""What train/preflight.py imports from beside train/ (smoke/startup_checks.py and the GPU rule it shares)."""


def job_dockerfile(base: str) -> str:
    """The job image: the pushed torchdev image, by digest, with this checkout's train/ and the startup checks the
    preflight runs (build from the repository root). The image's user and working directory stay torchdev and
    /workspace."""
    return (f"# The job image: the pushed torchdev image plus train/. Build it from the repository root:\n"
            f"#   docker build -f <this file> -t REGISTRY/NAME . && docker push REGISTRY/NAME\n"
            f"FROM {base}\n"
            f"COPY --chown=torchdev:torchdev train/ {WORKDIR}/train/\n"
            f"# the checks every container makes when it starts, which train/preflight.py runs too\n"
            f"COPY --chown=torchdev:torchdev {' '.join(STARTUP_FILES)} {WORKDIR}/smoke/\n")


class _PlainDumper(yaml.SafeDumper):
    """Writes a value used twice in full both times: no &anchors and *aliases for a reader to resolve."""

    def ignore_aliases(self, data) -> bool:
        return True


def render_command(job: TrainJob, *, variant: str) -> str:
    """The `./dev k8s` line that renders these manifests again (every value spelled out, --out left to the user)."""
    nproc = "" if job.gpus_per_node else f" --nproc {job.nproc_per_node}"
    train_args = shlex.quote(shlex.join(job.train_args))
    return (f"./dev k8s --variant {variant} --image {job.image} --nodes {job.nodes} --gpus {job.gpus_per_node}"
            f"{nproc} --name {job.name} --shm-size {job.shm_size} --cpu {job.cpu} --memory {job.memory} "
            f"--train-args {train_args}")


def manifests(job: TrainJob, *, variant: str) -> dict[str, str]:
    """File name -> YAML: the PyTorchJob and the Indexed Job, each with the job's NetworkPolicy, saying how it was
    made and how to apply it."""
    made = f"Rendered by torchdev (deploy/k8s/README.md) with:\n  {render_command(job, variant=variant)}"
    world = (f"{job.nodes} {_plural(job.nodes, 'node')} x {job.nproc_per_node} {_plural(job.nproc_per_node, 'process')}"
             + (f" on {job.gpus_per_node} {_plural(job.gpus_per_node, 'GPU')} each" if job.gpus_per_node
                else ", CPU only"))
    for file, documents in (("pytorchjob.yaml", [network_policy(job), pytorchjob(job)]),
                            ("indexed-job.yaml", [network_policy(job), *indexed_job(job)])):
        check_size(file, documents)
    return {
        "pytorchjob.yaml": to_yaml([network_policy(job), pytorchjob(job)], header=(
            f"Kubeflow PyTorchJob (kubeflow.org/v1, training operator v1.7 or later): {world}.\n{made}\n"
            f"Apply: kubectl apply -f pytorchjob.yaml; logs: kubectl logs -f {job.name}-master-0")),
        "indexed-job.yaml": to_yaml([network_policy(job), *indexed_job(job)], header=(
            f"Indexed Job + headless Service, no operator needed (Kubernetes 1.24+): {world}.\n{made}\n"
            f"Apply: kubectl apply -f indexed-job.yaml; logs: kubectl logs -f -l job-name={job.name} --prefix")),
    }


def check_size(file: str, documents: list[dict]) -> None:
    """Refuse an object the API server would refuse (OBJECT_MAX), before anything is written."""
    for document in documents:
        size = len(json.dumps(document))
        if size > OBJECT_MAX:
            raise TOO_LARGE_OBJECT(kind=document["kind"], file=file, size=size, limit=OBJECT_MAX)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + ("es" if word.endswith("s") else "s")


def to_yaml(documents: list[dict], *, header: str) -> str:
    """YAML documents in the order given, keys as written, under a comment header."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = "---\n".join(yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=120)
                         for document in documents)
    return comment + body


# --- the admission policy (sigstore policy-controller) -------------------------------------------------------------

@dataclass(frozen=True)
class PolicyKey:
    """The cosign public key --policy-key names: its path as given, and its PEM."""

    path: str
    pem: str


def policy_key(path: str) -> PolicyKey:
    """--policy-key's public key, checked before anything is written."""
    pem = input_text(Path(path), role="--policy-key")
    if pem is None:
        raise NO_KEY_FILE(option="--policy-key", path=path)
    trust.key_fingerprint(pem, path=f"--policy-key {path}")
    return PolicyKey(path, pem)


def cluster_image_policy(reports_dir: Path, *, name: str, variant: str, image: str | None, key: PolicyKey) -> str:
    """clusterimagepolicy.yaml: sigstore policy-controller admits the pushed torchdev images (the repository
    reports/push records for the variant) only when signed with the key and attested (SBOM, provenance), and the job
    image only when signed with it."""
    repository = ImageRef.parse(pushed_reference(reports_dir, variant)).repository
    job = ImageRef.parse(image).repository if image else None
    documents = admission.policies(name=name, torchdev_repository=repository, public_key=key.pem, job_repository=job)
    return to_yaml(documents, header=(
        f"sigstore policy-controller ClusterImagePolicy: pods in namespaces labelled "
        f"policy.sigstore.dev/include=true\nrun {repository} images only when signed by {key.path} and attested "
        "(SBOM, provenance)" + (f", and {job} only when signed by it" if job else "") +
        ".\nApply: kubectl apply -f clusterimagepolicy.yaml (docs/publishing.md)"))
