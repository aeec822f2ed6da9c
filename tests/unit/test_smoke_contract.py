"""The smoke suite's interface (smoke/smoke_contract.py), read by the suite and by torchdev: the summary's reader on
good and broken files, the --gpus grammar on both sides, the GPU architecture rule, and the places that cannot import
the module (the Dockerfile, the test modules' names, scripts/gpu-check.sh) checked against it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smoke.smoke_contract import (CHECKS, DECLARED, EXPECTATIONS, FAILED, IMAGE_MANIFEST, PASSED, SKIPPED,
                                  KernelSupport, SmokeSummary, SummaryError, format_gpus, kernel_support,
                                  parse_gpus, parse_summary, read_summary, write_summary)
from tests.helpers.cli import ROOT
from tests.helpers.summaries import check, summary
from tests.helpers.variants import make_plans, make_variant
from torchdev import gpus, project
from torchdev.errors import UsageError
from torchdev.gpus import GpuRequest, parse_option
from torchdev.matrix import CudaRelease, Flavour
from torchdev.smoke import SUITE_MOUNT, suite_arguments

SMOKE = ROOT / "smoke"
GOOD = summary(check("environment", PASSED), check("gpu", SKIPPED, "no GPUs requested", index=1),
               check("ddp", FAILED, "rank 1 exited 1\nits log", index=2), image_id="sha256:" + "a" * 64)


# --- the summary --------------------------------------------------------------------------------------------

def test_a_written_summary_reads_back_as_written_with_its_counts(tmp_path):
    write_summary(tmp_path / "s.json", GOOD)
    assert read_summary(tmp_path / "s.json") == GOOD
    document = json.loads((tmp_path / "s.json").read_text())
    assert (document["passed"], document["failed"], document["skipped"]) == (1, 1, 1)
    assert list(document) == ["variant", "torch", "python", "passed", "failed", "skipped", "checks", "image_id"]
    assert [row.nodeid for row in GOOD.failures()] == ["test_ddp.py::t2"]
    assert list(tmp_path.iterdir()) == [tmp_path / "s.json"], "no temporary file is left beside it"


def test_the_suites_own_summary_has_no_image_id_and_null_torch_is_allowed():
    bare = SmokeSummary(variant=None, torch=None, python="3.10.13", checks=())
    assert "image_id" not in bare.to_dict()
    assert parse_summary(json.dumps(bare.to_dict())) == bare


def broken(text: str) -> str:
    with pytest.raises(SummaryError) as caught:
        parse_summary(text)
    return str(caught.value)


def test_an_empty_or_truncated_summary_says_so():
    whole = json.dumps(GOOD.to_dict(), indent=1)
    assert broken("") == broken("  \n") == "it is empty"
    assert broken(whole[:len(whole) // 2]).startswith("it is not JSON, or cut short (")


@pytest.mark.parametrize("document, says", [
    ([], "the summary is a list, not a JSON object"),
    ("passed", "the summary is a string, not a JSON object"),
    ({**GOOD.to_dict(), "checks": {}}, "the summary's 'checks' is an object, not a list"),
    ({**GOOD.to_dict(), "passed": "1"}, "the summary's 'passed' is a string, not a number"),
    ({**GOOD.to_dict(), "passed": True}, "the summary's 'passed' is a boolean, not a number"),
    ({**GOOD.to_dict(), "python": None}, "the summary's 'python' is null, not a string"),
    ({**GOOD.to_dict(), "image_id": 3}, "'image_id' is a number, not a string"),
    ({**GOOD.to_dict(), "failed": 0}, "it counts 0 failed but lists 1"),
    ({**GOOD.to_dict(), "checks": [1]}, "check 1 is a number, not a JSON object"),
    ({**GOOD.to_dict(), "checks": [{**GOOD.checks[0].to_dict(), "outcome": "xfailed"}]},
     "check 1 (test_environment.py::t0) has outcome 'xfailed', not one of passed, failed, skipped"),
    ({**GOOD.to_dict(), "checks": [{**GOOD.checks[0].to_dict(), "duration": "1 s"}]},
     "check 1's 'duration' is a string, not a number"),
])
def test_a_summary_of_the_wrong_shape_names_the_problem(document, says):
    assert broken(json.dumps(document)) == says


@pytest.mark.parametrize("field", ["variant", "torch", "python", "passed", "failed", "skipped", "checks"])
def test_a_summary_missing_a_field_names_it(field):
    document = GOOD.to_dict()
    del document[field]
    assert broken(json.dumps(document)) == f"the summary has no '{field}'"


@pytest.mark.parametrize("field", ["check", "nodeid", "outcome", "reason", "duration"])
def test_a_check_missing_a_field_names_it(field):
    row = GOOD.checks[0].to_dict()
    del row[field]
    assert broken(json.dumps({**GOOD.to_dict(), "checks": [row], "passed": int(field != "outcome"), "failed": 0,
                              "skipped": 0})) == f"check 1 has no '{field}'"


def test_a_file_that_is_not_text_is_a_summary_error(tmp_path):
    (tmp_path / "s.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SummaryError, match="it is not text"):
        read_summary(tmp_path / "s.json")


# --- --gpus -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, count", [("auto", None), ("all", -1), ("none", 0), ("0", 0), ("3", 3), ("08", 8)])
def test_the_gpus_grammar_and_its_inverse(text, count):
    assert parse_gpus(text) == parse_option(text) == count
    assert parse_gpus(format_gpus(count)) == count


@pytest.mark.parametrize("text", ["two", "-1", "", " 1", "1.5", "ALL", "\u00b2"])
def test_anything_else_is_refused_on_both_sides_in_the_same_words(text):
    says = f"--gpus must be auto, all, none or a count, not '{text}'"
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_gpus(text)
    with pytest.raises(UsageError, match=re.escape(says)):
        parse_option(text)


def test_the_host_passes_the_suite_the_count_it_parsed():
    assert [GpuRequest(count).suite_option for count in (-1, 0, 2)] == ["all", "0", "2"]


# --- which GPU runs which kernels ---------------------------------------------------------------------------

@pytest.mark.parametrize("capability, architectures, support", [
    ((8, 6), ["sm_80", "sm_86"], KernelSupport.NATIVE),
    ((8, 9), ["sm_80", "sm_86"], KernelSupport.NATIVE),       # same major, higher minor
    ((8, 0), ["sm_86"], KernelSupport.NONE),                  # machine code never runs on a lower minor
    ((9, 0), ["sm_80", "sm_86"], KernelSupport.NONE),         # nor on another major
    ((9, 0), ["sm_86", "compute_86"], KernelSupport.PTX),     # PTX compiles for any higher capability
    ((7, 5), ["compute_80"], KernelSupport.NONE),
    ((9, 0), ["sm_90a"], KernelSupport.NATIVE),
    ((9, 0), ["gfx90a", "compute_90", "sm_90"], KernelSupport.NATIVE),
    ((5, 0), [], KernelSupport.NONE),
])
def test_the_architecture_rule_is_one_for_the_suite_and_the_doctor(capability, architectures, support):
    assert kernel_support(capability, architectures) is support
    assert gpus.kernel_support(f"{capability[0]}.{capability[1]}", architectures) is support


def test_the_architecture_rule_is_written_once():
    copies = [path.relative_to(ROOT) for folder in ("torchdev", "smoke") for path in (ROOT / folder).glob("*.py")
              if "(sm|compute)_" in path.read_text()]
    assert copies == [Path("smoke/smoke_contract.py")]


# --- what cannot import the module, checked against it ------------------------------------------------------

def test_the_dockerfile_declares_every_expectation_the_suite_reads_under_the_same_names():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    last_step = (ROOT / "docker" / "user-layer.sh").read_text()  # the images' last step, which the Dockerfile runs
    declared = set(re.findall(r'--declared "([a-z-]+)=', dockerfile + last_step))
    assert declared == set(DECLARED) and set(EXPECTATIONS) < declared
    assert f"> {IMAGE_MANIFEST}" in dockerfile and project.MANIFEST_IN_IMAGE == IMAGE_MANIFEST


def test_the_check_names_are_the_suites_test_modules():
    assert sorted(CHECKS) == sorted(path.stem.removeprefix("test_") for path in SMOKE.glob("test_*.py"))


# --- the suite itself, on a torch stand-in: its grammar, and the summary it writes read here ---------------------

FAKE_TORCH = {
    "torch/__init__.py": "import types\n__version__ = '2.0.1+stand-in'\n"
                         "cuda = types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)\n"
                         "version = types.SimpleNamespace(cuda=None)\n"
                         "backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(allow_tf32=True, "
                         "benchmark=False))\n",
    "torch/nn/__init__.py": "",
    "torch/nn/functional.py": "",
}


@pytest.fixture(scope="module")
def fake_torch(tmp_path_factory) -> Path:
    """Just enough of a torch for the suite's conftest and test_gpu.py to run where no GPU and no torch are."""
    folder = tmp_path_factory.mktemp("fake-torch")
    for name, text in FAKE_TORCH.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def run_suite(fake_torch: Path, *args: str, command: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """test_gpu.py with `args`, or the runner's whole `command` (python -m pytest ...) as given."""
    # PATH holds no nvidia-smi: this host's GPUs, if it has any, must not reach a run that asked for none
    environment = {**os.environ, "PYTHONPATH": str(fake_torch), "PYTHONDONTWRITEBYTECODE": "1", "PATH": str(fake_torch)}
    command = command or ("python", "-m", "pytest", str(SMOKE / "test_gpu.py"), "-q", *args)
    return subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, env=environment, cwd=SMOKE,
                          timeout=120, check=False)


@pytest.mark.parametrize("value, no_gpu_check", [("none", PASSED), ("auto", SKIPPED)])  # 0: the runner's test
def test_the_suite_reads_gpus_by_the_same_grammar_and_writes_a_summary_the_host_reads(fake_torch, tmp_path, value,
                                                                                     no_gpu_check):
    result = run_suite(fake_torch, "--gpus", value, "--variant", "stand-in", f"--summary-json={tmp_path / 's.json'}")
    assert result.returncode == 0, result.stdout + result.stderr
    written = read_summary(tmp_path / "s.json")
    assert (written.variant, written.torch, written.failed) == ("stand-in", "2.0.1+stand-in", 0)
    outcomes = {row.nodeid.split("::")[-1]: row for row in written.checks}
    assert outcomes.pop("test_a_run_that_asked_for_no_gpu_sees_none").outcome == no_gpu_check
    assert {(row.check, row.outcome) for row in outcomes.values()} == {("gpu", SKIPPED)}
    assert {row.reason for row in outcomes.values()} == {
        "no GPUs requested (--gpus auto: torch sees no CUDA device)" if value == "auto" else "no GPUs requested"}


def test_the_suite_refuses_a_gpus_value_outside_the_grammar_before_any_test(fake_torch):
    result = run_suite(fake_torch, "--gpus", "two")
    assert result.returncode == 4
    assert "--gpus must be auto, all, none or a count, not 'two'" in result.stderr


# --- scripts/gpu-check.sh's report reads the summary through the module -------------------------------------

def gpu_check_reader(summary_path: Path) -> str:
    """The failed-checks part of scripts/gpu-check.sh's report, run as the script runs it (from the checkout)."""
    script = (ROOT / "scripts" / "gpu-check.sh").read_text()
    line, reader = re.search(r"^([^\n]*<<'PY'[^\n]*)\n(.*?)\nPY$", script, re.M | re.S).groups()
    command = line.strip().replace('"$python"', f'"{sys.executable}"').replace('"$work/smoke.json"',
                                                                                 f'"{summary_path}"')
    result = subprocess.run(["bash", "-c", f"{command}\n{reader}\nPY\n"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_gpu_check_report_lists_the_failed_checks_or_says_why_it_cannot(tmp_path):
    write_summary(tmp_path / "s.json", GOOD)
    assert gpu_check_reader(tmp_path / "s.json") == "- test_ddp.py::t2: rank 1 exited 1\n"
    (tmp_path / "cut.json").write_text((tmp_path / "s.json").read_text()[:40])
    assert gpu_check_reader(tmp_path / "cut.json").startswith("- (the smoke summary is not one: it is not JSON")
    assert gpu_check_reader(tmp_path / "missing.json") == "- (no smoke summary: see below)\n"


def test_the_runners_command_line_runs_the_suite_with_every_expectation_and_the_host_reads_its_summary(fake_torch,
                                                                                                    tmp_path):
    release = CudaRelease("11.8", "11.8.0", "cuda>=11.8")
    devel = Flavour("devel", cuda_toolchain="https://nvidia.example/redist", cuda_components=("cuda_nvcc",))
    plan = make_plans(make_variant("cu118"), flavours=(devel,), releases=(release,))[0]
    command = suite_arguments(plan, gpus=GpuRequest(0), reports=str(tmp_path), checks=("gpu",))
    assert {option.removeprefix("--expect-") for option in command if option.startswith("--expect-")} == \
        set(EXPECTATIONS)
    result = run_suite(fake_torch, command=tuple(arg.replace(SUITE_MOUNT, str(SMOKE)) for arg in command))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "expectations=options" in result.stdout
    written = read_summary(tmp_path / f"{plan.name}.json")
    assert written.variant == plan.name and written.passed == 1 and written.failed == 0
    assert (tmp_path / f"{plan.name}.xml").is_file()
