"""torchdev/build.py: builds through the fake engine (tags move all together or not at all, whatever goes wrong, in
seconds), what a failed build reports, and the platforms a build stages locks for or emulates."""
import signal

import pytest

from tests.helpers.fake_engine import FakeEngine, config_digest_of
from tests.helpers.variants import make_plans, make_variant, plan_of
from torchdev.build import BuildStatus, apply_tags, build_all, emulation_notes, exit_status, failure_cause, run_buildx
from torchdev.errors import Interrupted, TorchdevError
from torchdev.plan import LockInput
from torchdev.platforms import AMD64, ARM64

CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))


@pytest.fixture()
def engine():
    return FakeEngine()


def test_a_tag_refused_half_way_puts_back_every_tag_already_moved(engine):
    old = engine.add_image("torchdev:2.0.1-cu118-py3.10", "torchdev:cu118")
    new = engine.add_image()
    engine.refused_tags.add("torchdev:cu118")
    before = dict(engine.names)
    with pytest.raises(TorchdevError, match=r"refused to tag .* as torchdev:cu118: .*; no tag was moved"):
        apply_tags(engine, image_id=new, references=("torchdev:2.0.1-cu118-py3.10", "torchdev:new", "torchdev:cu118"))
    assert engine.names == before and engine.names["torchdev:cu118"] == old
    assert "torchdev:new" not in engine.names


def test_an_interrupted_build_moves_no_tag_stops_the_others_and_goes_on_with_its_row_recorded(engine, tmp_path):
    """The interrupt is not swallowed (the runner says which signal and exits with its status, 130 or 143): the
    caller's list ends in the interrupted build's row, and the next build never starts."""
    plans = make_plans(make_variant("cu118"), make_variant("cpu", cuda=None))
    old = engine.add_image(*plans[0].references)
    engine.builds = [Interrupted(signal.SIGTERM)]
    results: list = []
    with pytest.raises(Interrupted):
        build_all(engine, plans, log_dir=tmp_path, results=results)
    assert [(r.image, r.status) for r in results] == [("cu118", BuildStatus.INTERRUPTED)], "cpu must not start"
    assert results[0].cause == "interrupted by SIGTERM: buildx was stopped, the previous tags are unchanged"
    assert exit_status(results) == 1
    assert {name: image for name, image in engine.names.items()} == {ref: old for ref in plans[0].references}


def test_a_failed_build_leaves_its_tags_and_the_next_variant_still_builds(engine, tmp_path):
    plans = make_plans(make_variant("cu118"), make_variant("cpu", cuda=None))
    engine.builds = [1, 0]
    results = build_all(engine, plans, log_dir=tmp_path)
    assert [r.status for r in results] == [BuildStatus.FAILED, BuildStatus.BUILT]
    assert exit_status(results) == 1
    assert not any(ref in engine.names for ref in plans[0].references)
    assert all(engine.names[ref] == results[1].image_id for ref in plans[1].references)


def test_the_immutable_tag_is_never_moved_to_other_content(engine, tmp_path):
    [plan] = make_plans(make_variant("cu118"))
    immutable = plan.immutable_references[0]
    old = engine.add_image(immutable)
    [result] = build_all(engine, [plan], log_dir=tmp_path)
    assert result.status is BuildStatus.FAILED
    assert f"the immutable tag {immutable} already names {old[:19]}" in result.cause
    assert result.image_id[:19] in result.cause and "docker image rm" in result.cause
    assert engine.names == {immutable: old}, "no tag moved, and the new untagged image was removed"
    assert engine.image(result.image_id) is None


def test_a_build_leaves_only_its_tags_not_the_name_the_export_gave_it(engine, tmp_path):
    [plan] = make_plans(make_variant("cu118"))
    [result] = build_all(engine, [plan], log_dir=tmp_path)
    assert sorted(name for name, image in engine.names.items() if image == result.image_id) == sorted(plan.references)


def test_a_rebuild_without_cache_of_the_same_inputs_keeps_the_immutable_tag_and_every_other(engine, tmp_path):
    """Builds are reproducible, so `--no-cache` after a build, or a build after `--no-cache`, is the same image: the
    immutable tag stays where it is and nothing is refused (it used to be, and then every later build too)."""
    engine.reproducible = True
    [plan] = make_plans(make_variant("cu118"))
    [first] = build_all(engine, [plan], log_dir=tmp_path)
    [uncached] = build_all(engine, [plan], log_dir=tmp_path, no_cache=True)
    [again] = build_all(engine, [plan], log_dir=tmp_path)
    assert [r.status for r in (first, uncached, again)] == [BuildStatus.BUILT] * 3
    assert first.image_id == uncached.image_id == again.image_id
    assert {ref: engine.names[ref] for ref in plan.references} == {ref: first.image_id for ref in plan.references}


def test_a_recorded_digest_is_checked_on_every_build_as_image_id_or_config_digest(engine, tmp_path):
    engine.reproducible = True
    [plan] = make_plans(make_variant("cu118"))
    [built] = build_all(engine, [plan], log_dir=tmp_path)
    config = config_digest_of(built.image_id)
    for recorded in (built.image_id, config):
        [plan] = make_plans(make_variant("cu118", digest=recorded))
        [result] = build_all(engine, [plan], log_dir=tmp_path)
        assert result.status is BuildStatus.BUILT, result.cause
    [plan] = make_plans(make_variant("cu118", digest="sha256:" + "d" * 64))
    before = dict(engine.names)
    [refused] = build_all(engine, [plan], log_dir=tmp_path)
    assert refused.status is BuildStatus.FAILED
    assert f"the build gave {built.image_id} (config {config}), images.yaml expects sha256:{'d' * 64}" in refused.cause
    assert "./dev verify-repro --variant cu118" in refused.cause
    assert engine.names == before, "no tag moved"


def test_torchdevs_own_message_is_preferred_over_buildkits_error():
    lines = ["#8 0.5 torchdev: torch 2.0.1 was not compiled with CUDA, the variant declares CUDA 11.8: check ...",
             "ERROR: failed to solve: process \"/bin/sh -c echo 'torchdev: $reason'\" did not complete successfully"]
    assert failure_cause(lines).startswith("torchdev: torch 2.0.1 was not compiled with CUDA")


def test_otherwise_the_last_buildkit_error_is_the_cause():
    lines = ["#1 ...", "ERROR: failed to solve: ubuntu:22.04: failed to resolve source metadata", "tail"]
    assert failure_cause(lines) == "ERROR: failed to solve: ubuntu:22.04: failed to resolve source metadata"


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


def test_run_buildx_stages_each_platforms_lock_under_its_os_arch_name(tmp_path):
    amd, arm = tmp_path / "cpu.txt", tmp_path / "cpu.linux-arm64.txt"
    amd.write_text("amd64 lock\n")
    arm.write_text("arm64 lock\n")
    plan = plan_of(CPU, platforms=(AMD64, ARM64), locks=(LockInput(amd, "a" * 64, AMD64),
                                                         LockInput(arm, "b" * 64, ARM64)))
    engine, scratch = FakeEngine(), tmp_path / "scratch"
    scratch.mkdir()
    status, _, metadata = run_buildx(engine, plan, scratch=scratch, log_path=tmp_path / "log")
    assert status == 0 and metadata.is_file()
    staged = scratch / "lock"
    assert sorted(path.name for path in staged.iterdir()) == ["linux-amd64.txt", "linux-arm64.txt"]
    assert (staged / "linux-arm64.txt").read_text() == "arm64 lock\n"
    assert (staged / "linux-amd64.txt").read_text() == "amd64 lock\n"
    assert engine.requests[0].contexts == {"lock": staged, "added": scratch / "added"}, \
        "the staged folders are the build's lock contexts"
    assert list((scratch / "added").iterdir()) == [], "the variant adds no package"
    assert list(engine.platforms.values()) == [("linux/amd64", "linux/arm64")]


def test_building_another_platform_than_the_hosts_says_it_is_emulated():
    plan = plan_of(CPU, platforms=(AMD64, ARM64))
    assert emulation_notes([plan], native=AMD64) == [
        "cpu: linux/arm64 is not this host's platform (linux/amd64): it builds and runs under emulation (qemu), "
        "several times slower"]
