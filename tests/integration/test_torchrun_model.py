"""train/preflight.py reads torchrun's command line with a model of torch 2.0.1's torchrun (its docstring says why
not with torch's own parser). Here, inside the test image, torch's own functions read the same command lines:
chosen ones torchrun accepts or refuses, and every one torchdev hands torchrun (compose, Slurm, each Kubernetes
pod after the operator, the Job controller and the kubelet). The model must read each the same way: node range,
processes, rendezvous backend, host and port, configuration, the static rank, the script and its arguments, or
refuse it as torch does."""
from __future__ import annotations

import json

from tests.helpers.cli import ROOT
from tests.helpers.torchrun_cases import all_cases


def test_the_preflights_model_reads_every_command_line_as_torch_2_0_1s_torchrun(built_image, containers):
    cases = all_cases()
    mounts = {str(ROOT / "train"): {"bind": "/opt/train", "mode": "ro"},
              str(ROOT / "tests" / "helpers"): {"bind": "/opt/check", "mode": "ro"}}
    finished = containers.run(built_image.image_id, ["python", "/opt/check/torchrun_reference.py"], volumes=mounts,
                              environment={"TORCHRUN_CASES": json.dumps(cases)}, timeout=300)
    assert finished.exit_code == 0, finished.output[-3000:]
    results = json.loads(next(line for line in finished.output.splitlines() if line.startswith("RESULTS "))[8:])
    assert results["torch_version"].startswith("2.0.1"), results["torch_version"]
    differ = [f"{case['name']}: torchrun {' '.join(case['argv'])} (env {case['env']}):\n  torch: {got['torch']}\n"
              f"  model: {got['model']}" for case, got in zip(cases, results["cases"])
              if ("refused" in got["torch"]) != ("refused" in got["model"])
              or ("refused" not in got["torch"] and got["torch"] != got["model"])]
    assert not differ, "train/preflight.py reads these otherwise than torch 2.0.1:\n" + "\n".join(differ)
    refused = [case["name"] for case, got in zip(cases, results["cases"]) if "refused" in got["torch"]]
    assert refused == [case["name"] for case in cases if case["refused"]], "the chosen cases say what torch does"
