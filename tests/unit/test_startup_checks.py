"""smoke/startup_checks.py: the rules every container is checked by when it starts (and the doctor and the preflight
share), each on made-up facts; what the script prints and that it never fails a start; the preflight saying them.

What these tests do not prove: that real GPUs report what nvidia-smi's stand-in says (tests/integration/
test_startup_checks.py runs the script in a real container, with the stand-in nvidia-smi mounted in)."""
import json

import pytest

from smoke import startup_checks as checks
from smoke.startup_checks import Facts, Gpu
from train import preflight as pf

MIB, GIB = 1 << 20, 1 << 30
CU117 = ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86")
H200 = Gpu("NVIDIA H200", "550.54.15", "9.0")
A10 = Gpu("NVIDIA A10", "550.54.15", "8.6")
CU118_REQUIRE = "cuda>=11.8 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471"


def facts(**changed) -> Facts:
    """A container where all is well: 8 GiB of /dev/shm, unlimited locked memory, one A10 the image's torch runs."""
    fields = dict(shm=8 * GIB, memlock=checks.UNLIMITED, gpus=(A10,), architectures=CU117, cuda="11.7",
                  constraint="", processes=1, workers=8)
    return Facts(**{**fields, **changed})


def test_all_is_well_says_nothing():
    assert checks.problems(facts()) == []
    assert checks.problems(facts(gpus=(), architectures=None, cuda=None)) == []


@pytest.mark.parametrize("processes, workers, needed", [(1, 0, 0), (2, 0, GIB), (1, 8, 8 * checks.WORKER_SHM),
                                                        (8, 8, 64 * checks.WORKER_SHM), (2, 1, GIB)])
def test_shm_is_sized_for_every_workers_batches_and_a_floor_for_several_processes(processes, workers, needed):
    assert checks.shm_needed(processes=processes, workers=workers) == needed
    assert checks.WORKER_SHM == 2 * 64 * 3 * 224 * 224 * 4  # two ImageNet-sized float32 batches of 64 in flight


def test_docker_default_shm_is_too_small_for_two_workers_and_says_how_to_grow_it():
    problem = checks.shm_problem(64 * MIB, processes=1, workers=2)
    assert problem.startswith("/dev/shm is 64 MiB and this container runs 1 process with 2 DataLoader workers each, "
                              "which need about 147 MiB there")
    assert "TORCHDEV_SHM_SIZE=8g" in problem and "--shm-size=8g" in problem and "medium: Memory" in problem
    assert checks.shm_problem(256 * MIB, processes=1, workers=2) == ""
    assert checks.shm_problem(64 * MIB, processes=1, workers=0) == "", "nothing passes through it"
    assert "does not exist" in checks.shm_problem(None, processes=1, workers=1)


def test_workers_come_from_the_setting_or_the_cpus_at_most_eight():
    assert checks.default_workers({"TORCHDEV_WORKERS": "3"}, cpus=64) == 3
    assert checks.default_workers({"TORCHDEV_WORKERS": "0"}, cpus=64) == 0
    assert checks.default_workers({}, cpus=64) == 8
    assert checks.default_workers({"TORCHDEV_WORKERS": "many"}, cpus=2) == 2


def test_locked_memory_matters_only_where_nccl_runs_and_is_fine_unlimited_or_large():
    problem = checks.memlock_problem(8 * MIB, nccl=True)
    assert problem.startswith("locked memory is limited to 8 MiB and NCCL will run") and "memlock=-1" in problem
    assert checks.memlock_problem(8 * MIB, nccl=False) == ""
    assert checks.memlock_problem(checks.UNLIMITED, nccl=True) == ""
    assert checks.memlock_problem(2 * GIB, nccl=True) == ""
    assert checks.problems(facts(memlock=8 * MIB, gpus=(A10, A10))) == [checks.memlock_problem(8 * MIB, nccl=True)]
    assert checks.problems(facts(memlock=8 * MIB)) == [], "one GPU, one node: no NCCL"
    assert checks.problems(facts(memlock=8 * MIB, nodes=2)) == [checks.memlock_problem(8 * MIB, nccl=True)]


def test_a_gpu_this_torch_has_no_kernels_for_is_one_line_naming_it_and_what_to_use():
    lines = checks.kernel_problems([H200], list(CU117))
    assert checks.problems(facts(gpus=(H200,))) == lines and len(lines) == 1
    assert lines[0].startswith("GPUs of compute capability 9.0: torch here has kernels for sm_37") and "cu118" in lines[0]
    jit = checks.kernel_problems([H200], [*CU117, "compute_86"])
    assert len(jit) == 1 and "only PTX compiled at first use" in jit[0]
    assert checks.kernel_problems([A10], list(CU117)) == []
    assert checks.kernel_problems([H200], []) == [], "a CPU build, or not a torchdev image: nothing to compare"
    assert checks.kernel_problems([Gpu("old", "470.1")], list(CU117)) == [], "no capability reported"


def test_the_kernel_verdicts_are_the_smoke_contracts_rule():
    assert checks.kernel_verdicts(["9.0", "8.6", "8.9"], list(CU117)) == (["9.0"], [])
    assert checks.kernel_verdicts(["9.0"], ["sm_80", "compute_80"]) == ([], ["9.0"])


def test_a_driver_too_old_for_the_images_cuda_is_a_problem_unless_the_image_admits_its_branch():
    problem = checks.driver_problem(cuda="11.8", driver="515.65.01", constraint=CU118_REQUIRE)
    assert problem.startswith("the NVIDIA driver is too old for this image (CUDA 11.8 needs >= 520.61.05, driver "
                              "515.65.01)")
    assert checks.driver_problem(cuda="11.8", driver="470.199.02", constraint=CU118_REQUIRE) == ""
    assert checks.driver_problem(cuda="11.7", driver="535.104.05") == ""
    assert checks.driver_problem(cuda=None, driver="470.1") == "" and checks.driver_problem(cuda="11.7", driver=None) == ""
    assert checks.driver_problem(cuda="12.9", driver="470.1") == "", "no minimum known: the doctor says so, not this"
    assert checks.problems(facts(gpus=(Gpu("A10", "510.47.03", "8.6"),)))[0].startswith("the NVIDIA driver is too old")


def test_skip_leaves_out_rules_another_check_has_judged():
    bad = facts(shm=64 * MIB, memlock=MIB, gpus=(H200, H200))
    assert len(checks.problems(bad)) == 3
    assert len(checks.problems(bad, skip=("shm", "memlock"))) == 1


def test_the_manifest_gives_the_architectures_and_the_cuda_release(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"torch_cuda_architectures": list(CU117), "declared": {"cuda": "11.7"}}))
    assert checks.image_declares(str(manifest)) == (CU117, "11.7")
    manifest.write_text(json.dumps({"torch_cuda_architectures": [], "declared": {"cuda": "none"}}))
    assert checks.image_declares(str(manifest)) == ((), None)
    manifest.write_text("{not json")
    assert checks.image_declares(str(manifest)) == (None, None)
    assert checks.image_declares(str(tmp_path / "missing.json")) == (None, None)


def test_the_script_prints_a_line_per_problem_and_never_fails_a_start(monkeypatch, capsys):
    monkeypatch.setattr(checks, "read_facts", lambda **_: facts(shm=64 * MIB, gpus=(H200,)))
    assert checks.main([]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("torchdev check: ") for line in err)
    monkeypatch.setattr(checks, "read_facts", lambda **_: facts())
    assert checks.main([]) == 0 and capsys.readouterr() == ("", "")

    def broken(**_):
        raise OSError("no /proc")
    monkeypatch.setattr(checks, "read_facts", broken)
    assert checks.main([]) == 0
    assert capsys.readouterr().err.startswith("torchdev check: the startup checks failed (OSError: no /proc)")


def test_the_facts_are_read_without_torch_and_count_a_process_per_gpu(monkeypatch):
    monkeypatch.setattr(checks, "query_gpus", lambda: [H200, H200])
    monkeypatch.setattr(checks, "image_declares", lambda: (CU117, "11.7"))
    found = checks.read_facts(environ={"TORCHDEV_WORKERS": "2", "NVIDIA_REQUIRE_CUDA": "cuda>=11.7"})
    assert (found.processes, found.workers, found.cuda, found.constraint) == (2, 2, "11.7", "cuda>=11.7")
    assert found.memlock == checks.memlock_limit()


def test_the_preflight_says_the_containers_checks_as_warnings_and_still_starts_torchrun(monkeypatch, capsys):
    monkeypatch.setattr(pf, "shm_bytes", lambda path=pf.SHM: 2 * GIB)
    monkeypatch.setattr(pf, "nvidia_device_files", lambda: ["/dev/nvidia0", "/dev/nvidia1"])
    monkeypatch.setattr(checks, "query_gpus", lambda: [H200, H200])
    monkeypatch.setattr(checks, "image_declares", lambda: (CU117, "11.7"))
    monkeypatch.setattr(checks, "memlock_limit", lambda: 8 * MIB)
    command = ["torchrun", "--standalone", "--nproc-per-node", "gpu", "train/train.py"]
    assert pf.preflight(command, {"TORCHDEV_WORKERS": "1"}) == (0, command)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0:2] for line in err] == [["preflight", " warning"]] * 2, err
    assert "locked memory is limited to 8 MiB" in err[0] and "compute capability 9.0" in err[1]
