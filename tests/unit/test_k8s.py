"""`./dev k8s` and deploy/k8s, offline: the rendered manifests against the Kubernetes 1.28 schemas
(kubernetes-validate, strict) and the PyTorchJob CRD's schema (vendored from training-operator v1.9.0) and its
webhook; then each pod's command line, after the operator or the Job controller added its environment and the
kubelet expanded $(VAR)s, read by torchrun's parser (torch's own when torch is importable, else the model of
torch 2.0.1's in tests/helpers/k8s.py, which the last tests hold to torch's where torch is present).

Nothing here runs a cluster, an operator or torchrun: what is proved is that the manifests are well-formed and say
what torchrun needs, not that pods find each other or train."""
from __future__ import annotations

import copy

import kubernetes_validate
import yaml
import pytest

from tests.helpers.k8s import (argv, container_env, crd_validator, example_dir, expand, indexed_job_env,
                               model_parser, operator_env, parse_torchrun, policy_glob_match, preflight_and_torchrun,
                               served_validator, torch_available, vendored_crd, vendored_policy_crd, webhook_errors)
from torchdev import admission, commands, k8s
from torchdev.errors import TorchdevError, UsageError
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


# --- what reaches torchrun ----------------------------------------------------------------------------------------

def pytorchjob_pods(document: dict):
    """(replica type, index, node rank) of every pod the operator creates."""
    replicas = document["spec"]["pytorchReplicaSpecs"]
    yield "Master", 0, 0
    for index in range(replicas.get("Worker", {}).get("replicas", 0)):
        yield "Worker", index, index + 1


def assert_preflight_reads(torchrun: list[str], env: dict, launch) -> None:
    """train/preflight.py reads the pod's torchrun flags as torchrun does: it waits for the right host."""
    ours = PREFLIGHT.parse_torchrun(torchrun[1:], env)
    assert (ours.min_nodes, ours.max_nodes, ours.node_rank, ours.rdzv_backend, f"{ours.host}:{ours.port}") == \
        (launch.min_nodes, launch.max_nodes, launch.node_rank, launch.rdzv_backend, launch.rdzv_endpoint)
    assert int(ours.nproc_per_node) == launch.nproc_per_node


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_each_pytorchjob_pod_runs_torchrun_as_its_node_of_one_static_rendezvous(job):
    document = k8s.pytorchjob(job)
    for replica, index, rank in pytorchjob_pods(document):
        container = containers(document["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"], "pytorch")
        env = container_env(container, operator_env(document, replica, index))
        peers, torchrun = preflight_and_torchrun(argv(container, env), env)
        launch = parse_torchrun(torchrun, env)
        assert (launch.min_nodes, launch.max_nodes, launch.node_rank) == (job.nodes, job.nodes, rank)
        # the preflight names every pod by the Service the operator gives it, and reads torchrun's flags alike
        expected = [f"{job.name}-master-0", *[f"{job.name}-worker-{i}" for i in range(job.nodes - 1)]]
        assert peers == (expected if job.nodes > 1 else [])
        assert_preflight_reads(torchrun, env, launch)
        assert launch.nproc_per_node == job.nproc_per_node
        assert (launch.rdzv_backend, launch.rdzv_endpoint) == ("static", f"{job.name}-master-0:23456")
        assert launch.script == "train/train.py"
        assert launch.script_args == ("--device", job.device, *job.train_args)
        assert int(env["WORLD_SIZE"]) == launch.max_nodes * launch.nproc_per_node  # the operator's count agrees


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
        assert_preflight_reads(torchrun, env, launch)
        assert (launch.min_nodes, launch.max_nodes, launch.node_rank) == (job.nodes, job.nodes, index)
        assert launch.nproc_per_node == job.nproc_per_node
        assert launch.rdzv_backend == "static"
        assert launch.script_args == ("--device", job.device, *job.train_args)
        # pod 0 is <job>-0 (the Job controller's hostname for index 0) in the Service named by its subdomain
        assert launch.rdzv_endpoint == f"{batch['metadata']['name']}-0.{pod['spec']['subdomain']}:29500"
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
    assert "resources" not in k8s.indexed_job(make_job(gpus=0))[1]["spec"]["template"]["spec"]["containers"][0]


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


def test_the_torchrun_model_reads_pet_variables_for_flags_left_out():
    args = model_parser({"PET_NNODES": "4", "PET_NODE_RANK": "3"}).parse_args(["--node-rank=1", "x.py", "--y"])
    assert (args.nnodes, args.node_rank, args.training_script_args) == ("4", 1, ["--y"])
    with pytest.raises(SystemExit):
        model_parser({}).parse_args(["--nodes=2", "x.py"])


@pytest.mark.skipif(not torch_available(), reason="torch is not installed on this host: the model stands in "
                    "(it matched torch 2.0.1's own parser when it was written)")
@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job.nodes}x{job.nproc_per_node}")
def test_the_model_reads_the_rendered_commands_as_torch_does(job):
    document = k8s.pytorchjob(job)
    for replica, index, _ in pytorchjob_pods(document):
        container = containers(document["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"], "pytorch")
        env = container_env(container, operator_env(document, replica, index))
        _, torchrun = preflight_and_torchrun(argv(container, env), env)
        assert parse_torchrun(torchrun, env, parser="model") == parse_torchrun(torchrun, env, parser="torch")


# --- the committed examples and the command -----------------------------------------------------------------------

@pytest.mark.parametrize("folder", sorted(EXAMPLES))
def test_the_committed_examples_are_what_the_renderer_writes(folder):
    inputs = dict(EXAMPLES[folder])
    variant = inputs.pop("variant")
    job = k8s.train_job(image=IMAGE, **inputs)
    for file_name, text in k8s.manifests(job, variant=variant).items():
        assert (example_dir(folder) / file_name).read_text() == text, \
            f"deploy/k8s/examples/{folder}/{file_name} is stale: render it again with the command in its header"


def render(tmp_path, monkeypatch, **options):
    monkeypatch.setattr(commands, "REPORTS_DIR", tmp_path / "reports")
    defaults = dict(variant="cu118", image=None, nodes=2, gpus=None, nproc=None, name=None, shm_size="2Gi",
                    train_args="--task mlp", out=str(tmp_path / "out"), overlay=None, policy_key=None)
    return commands.k8s(**{**defaults, **options})


def test_without_a_pushed_image_the_command_says_to_push_first(tmp_path, monkeypatch):
    with pytest.raises(TorchdevError, match=r"no pushed cu118 image recorded .* run `./dev push --variant cu118`"):
        render(tmp_path, monkeypatch)


def test_without_an_image_the_command_writes_the_job_images_dockerfile_from_the_pushed_digest(tmp_path, monkeypatch,
                                                                                              capsys):
    repository, digest = BASE.split(":2.0.1")[0], BASE.split("@")[1]
    write_push_record(tmp_path / "reports" / "push", PushRecord(
        image="cu118", tags=("2.0.1-cu118-py3.10",), repository=repository, digest=digest, references=(BASE,),
        size=1, compression="gzip", platforms=("linux/amd64",)))
    assert render(tmp_path, monkeypatch) == 0
    dockerfile = (tmp_path / "out" / "Dockerfile").read_text()
    assert f"\nFROM {BASE}\n" in dockerfile and "COPY --chown=torchdev:torchdev train/ /workspace/train/" in dockerfile
    assert "--image REGISTRY/NAME@sha256:" in capsys.readouterr().out
    assert not (tmp_path / "out" / "pytorchjob.yaml").exists()


def test_with_an_image_the_command_writes_both_manifests_with_one_gpu_per_node_by_default(tmp_path, monkeypatch):
    assert render(tmp_path, monkeypatch, image=IMAGE, nodes=3) == 0
    job = (tmp_path / "out" / "indexed-job.yaml").read_text()
    assert "nvidia.com/gpu: 1\n" in job and "- --nnodes=3\n" in job and "- --nproc-per-node=1\n" in job
    assert f"image: {IMAGE}\n" in (tmp_path / "out" / "pytorchjob.yaml").read_text()


@pytest.mark.parametrize("options, says", [
    (dict(image="registry.example.com/ml/job:latest"), "name the job image by digest"),
    (dict(image=IMAGE, variant="cpu", gpus="2"), "cpu is a CPU variant"),
    (dict(image=IMAGE, gpus="2", nproc="4"), "each process trains on its own GPU"),
    (dict(image=IMAGE, name="Torchdev_Job"), "--name Torchdev_Job"),
    (dict(image=IMAGE, name="j" * 41), "at most 40 characters"),
    (dict(image=IMAGE, nodes=0), "--nodes 0: at least 1"),
    (dict(image=IMAGE, shm_size="2GB"), "--shm-size 2GB"),
    (dict(image=IMAGE, gpus="two"), "--gpus two: a whole number"),
    (dict(image=IMAGE, variant="cu999"), "unknown variant 'cu999'"),
])
def test_each_unusable_value_is_one_line_naming_it(tmp_path, monkeypatch, options, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(")) as caught:
        render(tmp_path, monkeypatch, **options)
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
TORCHDEV = "registry.example.com/ml/torchdev"


def test_the_vendored_policy_crd_is_the_upstream_file_byte_for_byte():
    recorded, actual, crd = vendored_policy_crd()
    assert actual == recorded, "deploy/k8s/schemas/policy.sigstore.dev_clusterimagepolicies.yaml was edited below its header"
    assert crd["metadata"]["name"] == "clusterimagepolicies.policy.sigstore.dev"


@pytest.mark.parametrize("job_repository", [None, "registry.example.com/ml/torchdev-job"])
def test_the_policies_are_valid_cluster_image_policies(job_repository):
    validator = served_validator(vendored_policy_crd()[2], "v1beta1")
    documents = admission.policies(name="torchdev-cu118", torchdev_repository=TORCHDEV, public_key=PEM,
                                   job_repository=job_repository)
    assert len(documents) == (2 if job_repository else 1)
    for document in documents:
        assert document["apiVersion"] == "policy.sigstore.dev/v1beta1" and document["kind"] == "ClusterImagePolicy"
        errors = [error.message for error in validator.iter_errors(document)]
        assert errors == [], errors


def test_a_broken_policy_is_refused_by_the_crd_schema():
    validator = served_validator(vendored_policy_crd()[2], "v1beta1")
    document = admission.policies(name="x", torchdev_repository=TORCHDEV, public_key=PEM)[0]
    document["spec"]["authorities"][0]["keys"] = document["spec"]["authorities"][0].pop("key")
    assert list(validator.iter_errors(document))


def test_the_torchdev_images_need_the_signature_and_both_attestations_the_job_image_the_signature():
    torchdev_images, job_image = admission.policies(name="j", torchdev_repository=TORCHDEV, public_key=PEM,
                                                    job_repository=IMAGE.split("@")[0])
    authority = torchdev_images["spec"]["authorities"][0]
    assert authority["key"] == {"data": PEM, "hashAlgorithm": "sha256"} and "ctlog" not in authority
    assert {(a["name"], a["predicateType"]) for a in authority["attestations"]} == {
        ("sbom", "spdxjson"), ("provenance", "slsaprovenance1")}
    assert "attestations" not in job_image["spec"]["authorities"][0]
    with_log = admission.policies(name="j", torchdev_repository=TORCHDEV, public_key=PEM,
                                  tlog_url="https://rekor.sigstore.dev")[0]
    assert with_log["spec"]["authorities"][0]["ctlog"] == {"url": "https://rekor.sigstore.dev"}


@pytest.mark.parametrize("image, matched", [
    (f"{TORCHDEV}@sha256:{'1' * 64}", True), (f"{TORCHDEV}:2.0.1-cu118-py3.10", True),
    (f"{TORCHDEV}:cu118@sha256:{'1' * 64}", True), (f"{TORCHDEV}-job@sha256:{'1' * 64}", False),
    (f"{TORCHDEV}/other:1", False), ("registry.example.com/ml/other:1", False),
])
def test_the_globs_match_exactly_the_repositorys_tags_and_digests(image, matched):
    globs = [entry["glob"] for entry in admission.image_globs(TORCHDEV)]
    assert any(policy_glob_match(glob, image) for glob in globs) is matched


def test_docker_hub_repositories_are_matched_by_their_full_name():
    assert admission.canonical_repository("team/job") == "index.docker.io/team/job"
    assert admission.canonical_repository("ubuntu") == "index.docker.io/library/ubuntu"
    assert admission.canonical_repository("localhost:5000/job") == "localhost:5000/job"


def test_with_a_policy_key_the_command_writes_the_policy_beside_the_manifests(tmp_path, monkeypatch):
    key = tmp_path / "cosign.pub"
    key.write_text(PEM)
    repository, digest = BASE.split(":2.0.1")[0], BASE.split("@")[1]
    write_push_record(tmp_path / "reports" / "push", PushRecord(
        image="cu118", tags=("2.0.1-cu118-py3.10",), repository=repository, digest=digest, references=(BASE,),
        size=1, compression="gzip", platforms=("linux/amd64",)))
    assert render(tmp_path, monkeypatch, image=IMAGE, policy_key=str(key)) == 0
    text = (tmp_path / "out" / "clusterimagepolicy.yaml").read_text()
    documents = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in documents] == ["torchdev-cu118-torchdev-images", "torchdev-cu118-job-image"]
    assert documents[0]["spec"]["images"][0] == {"glob": f"{repository}:*"}
    assert documents[1]["spec"]["images"][1] == {"glob": f"{IMAGE.split('@')[0]}@*"}
    assert text.startswith("# sigstore policy-controller ClusterImagePolicy")


def test_a_policy_key_that_is_no_key_stops_before_anything_is_written(tmp_path, monkeypatch):
    key = tmp_path / "cosign.key"
    key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match="--policy-key .*: not a PEM public key"):
        render(tmp_path, monkeypatch, image=IMAGE, policy_key=str(key))
    assert not (tmp_path / "out").exists()
