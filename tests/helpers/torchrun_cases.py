"""Command lines torchrun is given: the ones torchdev's own files and manifests hand it, and chosen ones it accepts
or refuses. train/preflight.py's model of torch 2.0.1's torchrun must read each as torchrun does:
tests/unit/test_preflight.py checks the model alone, tests/integration/test_torchrun_model.py against torch itself."""
from __future__ import annotations

import re
import subprocess

import yaml

from tests.helpers.cli import ROOT
from tests.helpers.k8s import argv, container_env, indexed_job_env, operator_env, preflight_and_torchrun

SCRIPT = ["train/train.py", "--task", "mlp"]

ACCEPTED = [
    (["--nnodes=2", "--node-rank=1", "--nproc-per-node=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:1", "x.py"], {}),
    (["--nnodes", "1:3", "--nproc_per_node", "auto", "--rdzv_conf", "join_timeout=5", "-m", "pkg", "--flag"], {}),
    (["--standalone", "--max-restarts", "3", "--monitor-interval", "1", "x.py", "--nnodes", "9"], {}),
    (["--master_addr", "m", "--master_port", "7", "--node_rank", "1", "--nnodes", "2", "x.py"], {}),
    (["-r", "3", "-t", "1", "--log-dir", "/tmp/l", "--no-python", "--start-method", "fork", "bash", "-c", "x"], {}),
    (["--nnodes", "1:4", "--rdzv-backend", "c10d", "--rdzv-endpoint", "head", *SCRIPT], {}),
    (["--nnodes", "2", "--master-addr", "m", "--master-port", "1234", *SCRIPT], {}),
    (["--nnodes", "2", "--rdzv-endpoint", "x:5", "--master-addr", "m", *SCRIPT], {}),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "[fd00::1]:7", *SCRIPT], {}),
    (["--standalone", "--nnodes", "1", "--rdzv-endpoint", "elsewhere:1", *SCRIPT], {}),
    (["--rdzv-backend=c10d", "--rdzv-endpoint= h ", "--rdzv-conf", " join_timeout = 5 , is_host=1 ", *SCRIPT], {}),
    (["--nproc-per-node", "cpu", "--rdzv-backend", "static", "--rdzv-endpoint", "10.0.0.1:29500", *SCRIPT], {}),
    (["--node-rank", "1", *SCRIPT], {"PET_NNODES": "3", "PET_NODE_RANK": "2", "PET_STANDALONE": "0"}),
    (SCRIPT, {"PET_STANDALONE": "1", "PET_NPROC_PER_NODE": "2"}),
    (["--nnodes", "2", *SCRIPT], {"PET_MASTER_ADDR": "node0", "PET_MASTER_PORT": "23456", "PET_NODE_RANK": "1"}),
]
"""(torchrun's arguments, PET_* variables) torch 2.0.1's torchrun accepts."""

REFUSED = [
    (["--nnodes", "2:1", *SCRIPT], {}), (["--nnodes", "two", *SCRIPT], {}), (["--nnodes", "1:2:3", *SCRIPT], {}),
    (["--nodes", "2", *SCRIPT], {}), (["--node-rank", "$(PET_NODE_RANK)", *SCRIPT], {}),
    (["--nproc-per-node=$(PET_NPROC_PER_NODE)", *SCRIPT], {}), (["--nproc-per-node", "many", *SCRIPT], {}),
    (["--rdzv-conf", "join_timeout", *SCRIPT], {}), (["--rdzv-conf", "a=1,,b=2", *SCRIPT], {}),
    (["--rdzv-conf", "timeout=", *SCRIPT], {}),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "h:99999", *SCRIPT], {}),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "h:+5", *SCRIPT], {}),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "h/x:5", *SCRIPT], {}),
    (["--rdzv-backend", "static", "--rdzv-endpoint", "h", *SCRIPT], {}),
    (["--max-restarts", "-1", *SCRIPT], {}), (["--start-method", "thread", *SCRIPT], {}),
    (["--nnodes", "2"], {}), (SCRIPT, {"PET_STANDALONE": "yes"}), (SCRIPT, {"PET_NNODES": "0"}),
]
"""(torchrun's arguments, PET_* variables) torch 2.0.1's torchrun refuses: its parser, config_from_args or the
rendezvous handler."""


def torchrun_part(command: list[str]) -> list[str]:
    """torchrun's arguments in a container command (after the word torchrun)."""
    return command[command.index("torchrun") + 1:]


def with_defaults(text: str) -> str:
    """${NAME:-default} as compose reads it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def compose_commands() -> list[tuple[str, list[str]]]:
    """What compose.yaml's train service and each compose.multinode.yaml node hand torchrun, variables unset."""
    found = []
    for file, service in (("compose.yaml", "train"), ("compose.multinode.yaml", "node0")):
        spec = yaml.safe_load((ROOT / file).read_text())["services"][service]
        command = [with_defaults(word) for word in [*spec["entrypoint"], *spec.get("command", [])]]
        found.append((f"{file} {service}", torchrun_part(command)))
    return found


def sbatch_command() -> list[str]:
    """What deploy/slurm/train.sbatch's torchrun_command gives node 1 of a two-node job, from the script itself."""
    script = (ROOT / "deploy" / "slurm" / "train.sbatch").read_text()
    function = re.search(r"^torchrun_command\(\) \{.*?^\}", script, re.MULTILINE | re.DOTALL).group(0)
    env = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_ID": "7", "TORCHDEV_RDZV_BACKEND": "c10d",
           "TORCHDEV_RDZV_HOST": "10.0.0.1", "TORCHDEV_RDZV_PORT": "29407", "PATH": "/usr/bin:/bin"}
    output = subprocess.run(["bash", "-c", f"{function}\ntorchrun_command 2"], env=env, capture_output=True,
                            text=True, check=True).stdout
    return [*torchrun_part(output.splitlines()), *SCRIPT[1:]]


def kubernetes_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """Each pod's torchrun arguments and PET_* environment, in the manifests `./dev k8s` renders for a GPU and a
    CPU job, after the operator or the Job controller and the kubelet."""
    from torchdev import k8s

    image = "registry.example.com/ml/torchdev-job@sha256:" + "0" * 64
    found = []
    for job in (k8s.train_job(name="gpu", image=image, nodes=3, gpus_per_node=2),
                k8s.train_job(name="cpu", image=image, nodes=2, gpus_per_node=0, nproc_per_node=2)):
        document = k8s.pytorchjob(job)
        for replica, index in [("Master", 0), *[("Worker", i) for i in range(job.nodes - 1)]]:
            container = document["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"][0]
            found.append((f"PyTorchJob {job.name} {replica} {index}", container,
                          container_env(container, operator_env(document, replica, index))))
        pod = k8s.indexed_job(job)[1]["spec"]["template"]["spec"]
        found += [(f"Indexed Job {job.name} pod {index}", pod["containers"][0],
                   container_env(pod["containers"][0], indexed_job_env(index))) for index in range(job.nodes)]
    return [(name, torchrun_part(preflight_and_torchrun(argv(container, env), env)[1]),
             {key: value for key, value in env.items() if key.startswith("PET_")}) for name, container, env in found]


def all_cases() -> list[dict]:
    """Every case as {"name", "argv", "env", "refused"}: JSON for a script in the test image."""
    cases = [{"name": f"chosen {number}", "argv": argv_, "env": env, "refused": False}
             for number, (argv_, env) in enumerate(ACCEPTED)]
    cases += [{"name": f"refused {number}", "argv": argv_, "env": env, "refused": True}
              for number, (argv_, env) in enumerate(REFUSED)]
    cases += [{"name": name, "argv": argv_, "env": {}, "refused": False} for name, argv_ in compose_commands()]
    cases.append({"name": "train.sbatch", "argv": sbatch_command(), "env": {}, "refused": False})
    cases += [{"name": name, "argv": argv_, "env": env, "refused": False} for name, argv_, env in kubernetes_commands()]
    return cases
