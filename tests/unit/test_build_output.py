"""What a failed build reports, and the summary table."""
from torchdev.build import BuildResult, BuildStatus, failure_cause
from torchdev.engine import ImageSizes
from torchdev.presenter import build_table
from torchdev.table import human_size


def test_torchdevs_own_message_is_preferred_over_buildkits_error():
    lines = ["#8 0.5 torchdev: torch 2.0.1 was not compiled with CUDA, the variant declares CUDA 11.8: check ...",
             "ERROR: failed to solve: process \"/bin/sh -c echo 'torchdev: $reason'\" did not complete successfully"]
    assert failure_cause(lines).startswith("torchdev: torch 2.0.1 was not compiled with CUDA")


def test_otherwise_the_last_buildkit_error_is_the_cause():
    lines = ["#1 ...", "ERROR: failed to solve: ubuntu:22.04: failed to resolve source metadata", "tail"]
    assert failure_cause(lines) == "ERROR: failed to solve: ubuntu:22.04: failed to resolve source metadata"


def test_the_summary_has_one_row_per_image_with_status_both_sizes_and_cause():
    table = build_table([BuildResult("cpu", BuildStatus.BUILT, 61.2, ("torchdev:2.0.1-cpu-py3.10",),
                                       "sha256:" + "a" * 64, ImageSizes(on_disk=5 * 1024 ** 3, download=2 * 1024 ** 3)),
                           BuildResult("cu118", BuildStatus.FAILED, 3.0, cause="ERROR: failed to solve")])
    header, rule, cpu, cu118 = table.splitlines()
    assert header.split()[:3] == ["image", "status", "time"]
    assert "on disk (unpacked)" in header and "download (compressed)" in header
    assert cpu.split()[:7] == ["cpu", "built", "61", "s", "5.00", "GiB", "2.00"]
    assert "torchdev:2.0.1-cpu-py3.10" in cpu
    assert cu118.split()[:2] == ["cu118", "failed"] and cu118.endswith("ERROR: failed to solve")


def test_sizes_read_in_binary_units():
    assert [human_size(n) for n in (None, 512, 1536, 5 * 1024 ** 3)] == ["-", "512 B", "1.50 KiB", "5.00 GiB"]


def test_a_base_that_cannot_be_had_gets_the_mirror_fix():
    error = ("ERROR: failed to solve: localhost:1/gone/cuda:11.7.1: failed to resolve source metadata for "
             "localhost:1/gone/cuda:11.7.1: failed to do request: Head \"https://localhost:1/v2/gone/cuda/manifests/"
             "11.7.1\": dial tcp 127.0.0.1:1: connect: connection refused")
    cause = failure_cause(["#1 ...", error])
    assert cause.startswith("the base image localhost:1/gone/cuda:11.7.1 cannot be found or reached "
                            "(connection refused)")
    assert "point the variant's base at a mirror in an overlay" in cause and "./dev save-bases" in cause


def test_pips_and_apts_own_error_lines_beat_the_shell_command_buildkit_names():
    shell = ('ERROR: failed to solve: process "/bin/bash -o pipefail -c if [ -s /run/secrets/ca_bundle ]; then export '
             'PIP_CERT=/run/secrets/ca_bundle; fi && pip install --require-hashes" did not complete successfully')
    pip = ["#9 6.81 ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated "
           "the package versions, please update the hashes. Otherwise, examine the package contents carefully; "
           "someone may have tampered with them.", "#9 6.81     torch==2.0.1 from https://files/torch.whl:",
           "#9 6.81         Expected sha256 aaaa", "#9 6.81              Got        bbbb", shell]
    assert failure_cause(pip) == "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE."
    apt = ["#5 2.31 Reading package lists...", "#5 2.40 E: Unable to locate package python3-nosuch", shell]
    assert failure_cause(apt) == "E: Unable to locate package python3-nosuch"
