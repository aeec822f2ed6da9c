"""`./dev k8s` and deploy/k8s, offline: the rendered manifests against the Kubernetes 1.28 schemas
(kubernetes-validate, strict) and the PyTorchJob CRD's schema (vendored from training-operator v1.9.0) and its
webhook; then each pod's command line, after the operator or the Job controller added its environment and the
kubelet expanded $(VAR)s, read as torchrun reads it (train/preflight.py's model of torch 2.0.1's torchrun, which
tests/integration/test_torchrun_model.py holds to torch's own parser in the test image).

Nothing here runs a cluster, an operator or torchrun: what is proved is that the manifests are well-formed and say
what torchrun needs, not that pods find each other or train."""
from __future__ import annotations

import copy

import kubernetes_validate
import yaml
import pytest

from tests.helpers.k8s import (argv, container_env, crd_validator, example_dir, expand, indexed_job_env, operator_env,
                               parse_torchrun, pod_templates, preflight_and_torchrun, vendored_crd, webhook_errors)
from tests.helpers.context import make_context, output
from tests.helpers.pss import containers as all_containers, restricted_violations
from torchdev import commands, k8s
from torchdev.errors import TorchdevError, UsageError
from torchdev.presenter import show
from torchdev.records import PushRecord, write_push_record
from train import preflight as PREFLIGHT

KUBERNETES = "1.28.0"
IMAGE = "registry.example.com/ml/torchdev-job@sha256:" + "0" * 64
BASE = "registry.example.com/ml/torchdev:2.0.1-cu118-py3.10@sha256:" + "1" * 64
EXAMPLES = {  # deploy/k8s/examples/<folder>: the inputs each was rendered with
    "cu118": dict(name="torchdev-cu118", variant="cu118", nodes=2, gpus_per_node=8, nproc_per_node=None),
    "cpu": dict(name="torchdev-cpu", variant="cpu", nodes=2, gpus_per_node=0, nproc_per_node=2),
}


def make_job(nodes: int = 2, gpus: int = 8, nproc: int | None = None, **options) -> k8s.TrainJob:
    return k8s.train_job(name=options.pop("name", "torchdev-cu118"), image=IMAGE, nodes=nodes, gpus_per_node=gpus,
                         nproc_per_node=nproc, **options)


JOBS = [make_job(), make_job(nodes=3, gpus=1), make_job(nodes=1, gpus=2),
        make_job(gpus=0, nproc=2, name="torchdev-cpu", train_args="--task cnn --epochs 3")]


@pytest.fixture(scope="module")
def crd():
    return vendored_crd()[2]


def containers(pod_spec: dict, name: str) -> dict:
    return next(container for container in pod_spec["containers"] if container["name"] == name)


# --- the Kubernetes schemas ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_the_indexed_job_and_its_service_are_valid_kubernetes(job):
    for document in k8s.indexed_job(job):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


@pytest.mark.parametrize("path, value", [
    (("spec", "parallelism"), "2"),                                        # a string where an integer goes
    (("spec", "template", "spec", "containers", 0, "gpus"), 8),            # no such field
    (("spec", "template", "spec", "volumes", 0, "emptyDir", "medium"), 1),
    (("spec", "template", "spec", "subdomain"), ["svc"]),
])
def test_a_broken_job_is_refused_by_the_kubernetes_schema(path, value):
    job = k8s.indexed_job(make_job())[1]
    *parents, last = path
    target = job
    for key in parents:
        target = target[key]
    target[last] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES, strict=True)


def test_the_vendored_crd_is_the_upstream_file_byte_for_byte():
    recorded, actual, crd = vendored_crd()
    assert actual == recorded, "deploy/k8s/schemas/kubeflow.org_pytorchjobs.yaml was edited below its header"
    assert crd["metadata"]["name"] == "pytorchjobs.kubeflow.org"


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_the_pytorchjob_is_valid_against_the_crd_and_passes_the_operators_webhook(job, crd):
    document = k8s.pytorchjob(job)
    assert [error.message for error in crd_validator(crd).iter_errors(document)] == []
    assert webhook_errors(document) == []


@pytest.mark.parametrize("change, says", [
    (lambda spec: spec.update(nprocPerNode=8), "is not of type 'string'"),
    (lambda spec: spec.update(nprocPerNodes="8"), "'nprocPerNodes' was unexpected"),
    (lambda spec: spec["pytorchReplicaSpecs"]["Worker"].update(replicas="1"), "is not of type 'integer'"),
    (lambda spec: spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
     .update(resources={"limits": ["nvidia.com/gpu"]}), "is not of type 'object'"),
])
def test_a_broken_pytorchjob_is_refused_by_the_crd_schema(change, says, crd):
    document = k8s.pytorchjob(make_job())
    change(document["spec"])
    assert says in " ".join(error.message for error in crd_validator(crd).iter_errors(document))


@pytest.mark.parametrize("change, says", [
    (lambda job: job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
     .update(name="train"), "Master: no container named pytorch"),
    (lambda job: job["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas=2), "Master: replicas must be 1"),
    (lambda job: job["metadata"].update(name="torchdev_cu118"), "is no DNS-1035 label"),
])
def test_the_webhook_model_refuses_what_the_operator_refuses(change, says):
    document = k8s.pytorchjob(make_job())
    change(document)
    assert says in " ".join(webhook_errors(document))


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_the_network_policy_is_valid_kubernetes_and_selects_the_jobs_pods(job):
    policy = k8s.network_policy(job)
    kubernetes_validate.validate(policy, KUBERNETES, strict=True)
    for document in [*k8s.indexed_job(job), k8s.pytorchjob(job)]:
        for _, template in pod_templates(document):
            assert policy["spec"]["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_only_the_jobs_own_pods_get_in_on_any_port_and_out_go_only_they_and_dns():
    job = make_job()
    spec = k8s.network_policy(job)["spec"]
    own = {"podSelector": {"matchLabels": k8s.labels(job)}}
    assert spec["policyTypes"] == ["Ingress", "Egress"], "both directions: what is not listed is refused"
    assert spec["ingress"] == [{"from": [own]}], "no ports listed: every port (NCCL and gloo use ephemeral ones)"
    assert spec["egress"] == [{"to": [own]}, {"ports": [{"protocol": "UDP", "port": 53},
                                                        {"protocol": "TCP", "port": 53}]}]
    assert "namespaceSelector" not in str(spec), "pods of this namespace only"


@pytest.mark.parametrize("change, says", [
    (lambda policy: policy["spec"].update(podSelector={"matchLabels": {"app": "x"}}), None),
    (lambda policy: policy["spec"]["ingress"][0].update(ports="all"), "ports"),
    (lambda policy: policy["spec"].update(policyType=["Ingress"]), "policyType"),
])
def test_a_broken_network_policy_is_refused_by_the_kubernetes_schema(change, says):
    policy = k8s.network_policy(make_job())
    change(policy)
    if says is None:  # valid, but it would no longer select the job's pods
        kubernetes_validate.validate(policy, KUBERNETES, strict=True)
        assert policy["spec"]["podSelector"]["matchLabels"] != k8s.labels(make_job())
        return
    with pytest.raises(kubernetes_validate.ValidationError, match=says):
        kubernetes_validate.validate(policy, KUBERNETES, strict=True)


def pods_of(job: k8s.TrainJob) -> list[tuple[str, dict]]:
    return [(where, template) for document in [*k8s.indexed_job(job), k8s.pytorchjob(job)]
            for where, template in pod_templates(document)]


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_every_pod_meets_the_restricted_pod_security_standard(job):
    pods = pods_of(job)
    assert [where for where, _ in pods] == ["Job", "Master", *(["Worker"] if job.nodes > 1 else [])]
    for where, template in pods:
        assert restricted_violations(template["spec"], template["metadata"]) == [], where


def test_every_container_runs_as_the_images_user_without_privileges_or_the_service_accounts_token():
    for where, template in pods_of(make_job()):
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        for path, container in all_containers(spec):
            assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}, f"{where} {path}"
    init = k8s.indexed_job(make_job())[1]["spec"]["template"]["spec"]["initContainers"]
    assert [container["name"] for container in init] == ["wait-for-master"], "the init container is checked too"


POD_CHANGES = {
    "host IPC": (lambda spec: spec.update(hostIPC=True), "spec.hostIPC"),
    "host network": (lambda spec: spec.update(hostNetwork=True), "spec.hostNetwork"),
    "privileged": (lambda spec: spec["containers"][0]["securityContext"].update(privileged=True),
                   "spec.containers[0].securityContext.privileged"),
    "a capability beyond the default set": (lambda spec: spec["containers"][0]["securityContext"]["capabilities"]
                                            .update(add=["SYS_ADMIN"]), "capabilities.add is ['SYS_ADMIN']"),
    "a default capability": (lambda spec: spec["containers"][0]["securityContext"]["capabilities"]
                             .update(add=["CHOWN"]), "capabilities.add is ['CHOWN']; allowed: undefined"),
    "no drop ALL": (lambda spec: spec["initContainers"][0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
                    "spec.initContainers[0].securityContext.capabilities.drop"),
    "privilege escalation": (lambda spec: spec["initContainers"][0]["securityContext"]
                             .pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is None; allowed: false"),
    "root allowed": (lambda spec: spec["securityContext"].pop("runAsNonRoot"),
                     "spec.containers[0].securityContext.runAsNonRoot is None"),
    "a container that may run as root": (lambda spec: spec["containers"][0]["securityContext"]
                                         .update(runAsNonRoot=False), "runAsNonRoot is False"),
    "uid 0": (lambda spec: spec["securityContext"].update(runAsUser=0), "spec.securityContext.runAsUser is 0"),
    "no seccomp profile": (lambda spec: spec["securityContext"].pop("seccompProfile"),
                           "seccompProfile.type is None; allowed: RuntimeDefault, Localhost"),
    "seccomp unconfined": (lambda spec: spec["containers"][0]["securityContext"]
                           .update(seccompProfile={"type": "Unconfined"}), "seccompProfile.type is 'Unconfined'"),
    "a hostPath volume": (lambda spec: spec["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
                          "spec.volumes[1].hostPath"),
    "an nfs volume": (lambda spec: spec["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
                      "spec.volumes[1] is ['nfs']"),
    "a host port": (lambda spec: spec["containers"][0]["ports"][0].update(hostPort=29500),
                    "spec.containers[0].ports[0].hostPort"),
    "a host probe": (lambda spec: spec["containers"][0].update(livenessProbe={"tcpSocket": {"host": "10.0.0.1",
                                                                                            "port": 1}}),
                     "livenessProbe.tcpSocket.host"),
    "an unsafe sysctl": (lambda spec: spec["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
                         "spec.securityContext.sysctls[0].name"),
    "unmasked /proc": (lambda spec: spec["containers"][0]["securityContext"].update(procMount="Unmasked"),
                       "procMount is 'Unmasked'"),
    "an SELinux type": (lambda spec: spec["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
                        "seLinuxOptions.type is 'spc_t'"),
    "AppArmor unconfined": (lambda spec: spec["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
                            "appArmorProfile.type is 'Unconfined'"),
    "a Windows host process": (lambda spec: spec["securityContext"].update(windowsOptions={"hostProcess": True}),
                               "windowsOptions.hostProcess"),
}


@pytest.mark.parametrize("name", sorted(POD_CHANGES))
def test_the_restricted_check_refuses_each_control_it_reads(name):
    """Each control of the specification, broken once in the Indexed Job's pod, is named (so the check can fail)."""
    change, says = POD_CHANGES[name]
    template = copy.deepcopy(k8s.indexed_job(make_job())[1]["spec"]["template"])
    change(template["spec"])
    assert any(says in violation for violation in restricted_violations(template["spec"], template["metadata"])), \
        restricted_violations(template["spec"], template["metadata"])


def test_an_apparmor_annotation_other_than_the_runtimes_is_refused():
    template = k8s.indexed_job(make_job())[1]["spec"]["template"]
    metadata = {**template["metadata"], "annotations": {
        "container.apparmor.security.beta.kubernetes.io/train": "unconfined"}}
    assert restricted_violations(template["spec"], metadata) == [
        "metadata.annotations['container.apparmor.security.beta.kubernetes.io/train'] is 'unconfined'; allowed: "
        "runtime/default, localhost/*"]


def test_windows_pods_are_spared_the_linux_only_controls():
    template = copy.deepcopy(k8s.indexed_job(make_job())[1]["spec"]["template"])
    for _, container in all_containers(template["spec"]):
        del container["securityContext"]
    template["spec"]["securityContext"].pop("seccompProfile")
    assert len(restricted_violations(template["spec"])) == 6, "escalation, seccomp, capabilities x 2 containers"
    template["spec"]["os"] = {"name": "windows"}
    assert restricted_violations(template["spec"]) == []


def test_each_container_requests_cpu_and_memory_by_default_per_process_and_as_told():
    job = make_job()  # 8 GPUs: 8 processes, a 2Gi /dev/shm
    container = k8s.indexed_job(job)[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "8", "memory": "34Gi"}, "limits": {"nvidia.com/gpu": 8}}
    init = k8s.indexed_job(job)[1]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}}
    told = make_job(gpus=0, nproc=2, cpu="6", memory="12Gi")
    assert k8s.pytorchjob(told)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "resources"] == {"requests": {"cpu": "6", "memory": "12Gi"}}
    assert "--cpu 6 --memory 12Gi" in k8s.render_command(told, variant="cpu")


# --- what reaches torchrun ----------------------------------------------------------------------------------------

def pytorchjob_pods(document: dict):
    """(replica type, index, node rank) of every pod the operator creates."""
    replicas = document["spec"]["pytorchReplicaSpecs"]
    yield "Master", 0, 0
    for index in range(replicas.get("Worker", {}).get("replicas", 0)):
        yield "Worker", index, index + 1


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_each_pytorchjob_pod_runs_torchrun_as_its_node_of_one_static_rendezvous(job):
    document = k8s.pytorchjob(job)
    for replica, index, rank in pytorchjob_pods(document):
        container = containers(document["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"], "pytorch")
        env = container_env(container, operator_env(document, replica, index))
        peers, torchrun = preflight_and_torchrun(argv(container, env), env)
        launch = parse_torchrun(torchrun, env)
        assert (launch.min_nodes, launch.max_nodes, launch.node_rank) == (job.nodes, job.nodes, rank)
        # the preflight names every pod by the Service the operator gives it
        expected = [f"{job.name}-master-0", *[f"{job.name}-worker-{i}" for i in range(job.nodes - 1)]]
        assert peers == (expected if job.nodes > 1 else [])
        assert int(launch.nproc_per_node) == job.nproc_per_node
        assert (launch.rdzv_backend, launch.host, launch.port) == ("static", f"{job.name}-master-0", 23456)
        assert launch.script == "train/train.py"
        assert launch.script_args == ("--device", job.device, *job.train_args)
        assert int(env["WORLD_SIZE"]) == launch.max_nodes * int(launch.nproc_per_node)  # the operator's count agrees


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_each_indexed_job_pod_runs_torchrun_as_node_index_with_pod_0_as_master(job):
    service, batch = k8s.indexed_job(job)
    pod = batch["spec"]["template"]
    for index in range(batch["spec"]["completions"]):
        container = containers(pod["spec"], "train")
        env = container_env(container, indexed_job_env(index))
        peers, torchrun = preflight_and_torchrun(argv(container, env), env)
        launch = parse_torchrun(torchrun, env)
        expected = [f"{job.name}-{i}.{pod['spec']['subdomain']}" for i in range(job.nodes)]
        assert peers == (expected if job.nodes > 1 else [])
        assert (launch.min_nodes, launch.max_nodes, launch.node_rank) == (job.nodes, job.nodes, index)
        assert int(launch.nproc_per_node) == job.nproc_per_node
        assert launch.rdzv_backend == "static"
        assert launch.script_args == ("--device", job.device, *job.train_args)
        # pod 0 is <job>-0 (the Job controller's hostname for index 0) in the Service named by its subdomain
        assert (launch.host, launch.port) == (f"{batch['metadata']['name']}-0.{pod['spec']['subdomain']}", 29500)
    assert batch["spec"]["parallelism"] == batch["spec"]["completions"] == job.nodes
    assert service["metadata"]["name"] == pod["spec"]["subdomain"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_every_pod_gets_its_gpus_and_a_memory_backed_shm():
    for pod in [k8s.indexed_job(make_job())[1]["spec"]["template"]["spec"],
                *[r["template"]["spec"] for r in k8s.pytorchjob(make_job())["spec"]["pytorchReplicaSpecs"].values()]]:
        container = pod["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert container["image"] == IMAGE
        shm = next(volume for volume in pod["volumes"] if volume["emptyDir"].get("medium") == "Memory")
        assert {"name": shm["name"], "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert "limits" not in k8s.indexed_job(make_job(gpus=0))[1]["spec"]["template"]["spec"]["containers"][0][
        "resources"]


@pytest.mark.parametrize("given, written", [("2Gi", "2Gi"), ("512Mi", "512Mi"), ("1.5Gi", "1536Mi"), ("8G", "8G")])
def test_the_shm_size_given_is_the_empty_dirs_size_limit(given, written):
    """The container profile (torchdev.profile.KUBERNETES) with the job's --shm-size, as Kubernetes counts it."""
    volumes = k8s.indexed_job(make_job(shm_size=given))[1]["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": written}}]


def test_a_variable_nobody_sets_stays_literal_and_torchrun_refuses_it():
    """An operator that does not set PET_NPROC_PER_NODE (one older than nprocPerNode, v1.7) fails the pod at once,
    instead of each pod starting a one-process job."""
    document = k8s.pytorchjob(make_job())
    container = containers(document["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"], "pytorch")
    env = container_env(container, operator_env(document, "Master", 0))
    del env["PET_NPROC_PER_NODE"]
    assert "--nproc-per-node=$(PET_NPROC_PER_NODE)" in argv(container, env)
    _, torchrun = preflight_and_torchrun(argv(container, env), env)
    with pytest.raises(ValueError):
        parse_torchrun(torchrun, env)


def test_the_wait_for_the_master_survives_expansion_unchanged():
    """Its script has no `$`: the kubelet would read $(...) in a command as a variable reference."""
    init = k8s.indexed_job(make_job())[1]["spec"]["template"]["spec"]["initContainers"][0]
    assert argv(init, indexed_job_env(1)) == init["command"]
    assert "getent hosts torchdev-cu118-0.torchdev-cu118" in init["command"][-1]


@pytest.mark.parametrize("text, env, expected", [
    ("$(A)-$(B)", {"A": "1"}, "1-$(B)"), ("$$(A)", {"A": "1"}, "$(A)"), ("$A $(", {"A": "1"}, "$A $("),
    ("x$$$(A)", {"A": "1"}, "x$1"),
])
def test_expansion_follows_the_kubelets_rules(text, env, expected):
    assert expand(text, env) == expected


# --- the committed examples and the command -----------------------------------------------------------------------

@pytest.mark.parametrize("folder", sorted(EXAMPLES))
def test_the_committed_examples_are_what_the_renderer_writes(folder):
    inputs = dict(EXAMPLES[folder])
    variant = inputs.pop("variant")
    job = k8s.train_job(image=IMAGE, **inputs)
    for file_name, text in k8s.manifests(job, variant=variant).items():
        assert (example_dir(folder) / file_name).read_text() == text, \
            f"deploy/k8s/examples/{folder}/{file_name} is stale: render it again with the command in its header"


def render(tmp_path, **options) -> tuple[int, str]:
    """`./dev k8s` with reports/ in tmp_path: its exit status and what it printed (its errors raise)."""
    ctx = make_context(reports=tmp_path / "reports")
    defaults = dict(variant="cu118", image=None, nodes=2, gpus=None, nproc=None, name=None, shm_size="2Gi",
                    train_args="--task mlp", out=str(tmp_path / "out"), overlay=None, policy_key=None)
    status = show(commands.k8s(ctx, **{**defaults, **options}), out=ctx.out, err=ctx.err)
    return status, output(ctx)[0]


def test_without_a_pushed_image_the_command_says_to_push_first(tmp_path):
    with pytest.raises(TorchdevError, match=r"no pushed cu118 image recorded .* run `./dev push --variant cu118`"):
        render(tmp_path)


def test_without_an_image_the_command_writes_the_job_images_dockerfile_from_the_pushed_digest(tmp_path):
    repository, digest = BASE.split(":2.0.1")[0], BASE.split("@")[1]
    write_push_record(tmp_path / "reports" / "push", PushRecord(
        image="cu118", tags=("2.0.1-cu118-py3.10",), repository=repository, digest=digest, references=(BASE,),
        size=1, compression="gzip", platforms=("linux/amd64",)))
    status, printed = render(tmp_path)
    assert status == 0
    dockerfile = (tmp_path / "out" / "Dockerfile").read_text()
    assert f"\nFROM {BASE}\n" in dockerfile and "COPY --chown=torchdev:torchdev train/ /workspace/train/" in dockerfile
    assert ("COPY --chown=torchdev:torchdev smoke/smoke_contract.py smoke/startup_checks.py /workspace/smoke/"
            in dockerfile), "the preflight's startup checks come with it"
    assert "--image REGISTRY/NAME@sha256:" in printed
    assert not (tmp_path / "out" / "pytorchjob.yaml").exists()


def test_with_an_image_the_command_writes_both_manifests_with_one_gpu_per_node_by_default(tmp_path):
    status, printed = render(tmp_path, image=IMAGE, nodes=3)
    assert status == 0 and f"wrote {tmp_path / 'out' / 'indexed-job.yaml'}\n" in printed
    job = (tmp_path / "out" / "indexed-job.yaml").read_text()
    assert "nvidia.com/gpu: 1\n" in job and "- --nnodes=3\n" in job and "- --nproc-per-node=1\n" in job
    assert f"image: {IMAGE}\n" in (tmp_path / "out" / "pytorchjob.yaml").read_text()


@pytest.mark.parametrize("options, says", [
    (dict(image="registry.example.com/ml/job:latest"), "name the job image by digest"),
    (dict(image=IMAGE, variant="cpu", gpus="2"), "cpu is a CPU variant"),
    (dict(image=IMAGE, gpus="2", nproc="4"), "each process trains on its own GPU"),
    (dict(image=IMAGE, name="Torchdev_Job"), "--name Torchdev_Job"),
    (dict(image=IMAGE, name="j" * 41), "at most 40 characters"),
    (dict(image=IMAGE, nodes=0), "--nodes 0: out of range"),
    (dict(image=IMAGE, shm_size="2GB"), "--shm-size 2GB"),
    (dict(image=IMAGE, gpus="two"), "--gpus two: not a whole number"),
    (dict(image=IMAGE, cpu="eight"), "--cpu eight: CPUs each pod requests"),
    (dict(image=IMAGE, cpu="0"), "--cpu 0: CPUs each pod requests"),
    (dict(image=IMAGE, memory="32GB"), "--memory 32GB: memory each pod requests"),
    (dict(image=IMAGE, variant="cu999"), "unknown variant 'cu999'"),
])
def test_each_unusable_value_is_one_line_naming_it(tmp_path, options, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(")) as caught:
        render(tmp_path, **options)
    assert "\n" not in str(caught.value)


def test_a_rendered_manifest_does_not_share_objects_between_replicas():
    """PyYAML would write a dict used twice as an &anchor and a *alias, which kubectl reads but people do not."""
    text = k8s.to_yaml([k8s.pytorchjob(make_job())], header="x")
    assert "&id" not in text and "*id" not in text
    document = k8s.pytorchjob(make_job())
    master, worker = (document["spec"]["pytorchReplicaSpecs"][kind]["template"] for kind in ("Master", "Worker"))
    assert master == worker and master is not worker
    copy.deepcopy(document)  # plain data all the way down


# --- the admission policy (sigstore policy-controller) -------------------------------------------------------------

PEM = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPGgLefyOkicW+x5gKcYXF1e2lrmZ\n"
       "IFqm8hKZ8V86MaGEhyPYC2dtRM0Vke5vIxS7YTzkWGcOT664ssQWfLXlfA==\n-----END PUBLIC KEY-----\n")


def test_with_a_policy_key_the_command_writes_the_policy_beside_the_manifests(tmp_path):
    key = tmp_path / "cosign.pub"
    key.write_text(PEM)
    repository, digest = BASE.split(":2.0.1")[0], BASE.split("@")[1]
    write_push_record(tmp_path / "reports" / "push", PushRecord(
        image="cu118", tags=("2.0.1-cu118-py3.10",), repository=repository, digest=digest, references=(BASE,),
        size=1, compression="gzip", platforms=("linux/amd64",)))
    status, printed = render(tmp_path, image=IMAGE, policy_key=str(key))
    assert status == 0 and f"wrote {tmp_path / 'out' / 'clusterimagepolicy.yaml'}\n" in printed
    text = (tmp_path / "out" / "clusterimagepolicy.yaml").read_text()
    documents = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in documents] == ["torchdev-cu118-torchdev-images", "torchdev-cu118-job-image"]
    assert documents[0]["spec"]["images"][0] == {"glob": f"{repository}:*"}
    assert documents[1]["spec"]["images"][1] == {"glob": f"{IMAGE.split('@')[0]}@*"}
    assert text.startswith("# sigstore policy-controller ClusterImagePolicy")


def test_a_policy_key_that_is_no_key_stops_before_anything_is_written(tmp_path):
    key = tmp_path / "cosign.key"
    key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match="--policy-key .*: not a PEM public key"):
        render(tmp_path, image=IMAGE, policy_key=str(key))
    assert not (tmp_path / "out").exists()


def test_a_policy_without_a_pushed_image_to_name_stops_before_the_manifests_are_written(tmp_path):
    key = tmp_path / "cosign.pub"
    key.write_text(PEM)
    with pytest.raises(TorchdevError, match=r"no pushed cu118 image recorded"):
        render(tmp_path, image=IMAGE, policy_key=str(key))
    assert not (tmp_path / "out").exists()
