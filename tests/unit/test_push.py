"""`invoke push` against the fake engine's in-memory registry: every tag, one digest, the immutable tag never
overwritten, an identical re-push a no-op, only smoke-tested images, one line per refusal, and no report for a
push that did not finish. tests/integration/test_push.py does the same against a real registry."""
from __future__ import annotations

import io
from dataclasses import replace

import pytest

from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.summaries import write_counts
from tests.helpers.variants import TEST_SETTINGS, make_plans, make_variant
from torchdev import commands
from torchdev.checkout import read_plans
from torchdev.errors import UsageError
from torchdev.matrix import load_matrix
from torchdev.platforms import AMD64, ARM64
from torchdev.presenter import push_table
from torchdev.push import PushStatus, destination, push_failure, push_image, push_images, write_report
from torchdev.records import read_copy_digests, read_push_record, record_copy_digest
from torchdev.runner import execute

REPOSITORY = "registry.test:5000/ml/torchdev"


@pytest.fixture()
def plan():
    return make_plans(make_variant("cu118"), settings=replace(TEST_SETTINGS, repository="torchdev"))[0]


def built(engine: FakeEngine, plan, smoke_dir, *, failed: int = 0, tested: str | None = None) -> str:
    image_id = engine.add_image(*plan.references, labels={"io.torchdev.variant": plan.variant.name})
    write_counts(smoke_dir / f"{plan.name}.json", passed=30, failed=failed, image_id=tested or image_id)
    return image_id


def push(engine, plan, smoke_dir, **options):
    return push_image(engine, plan, repository=REPOSITORY, compression=options.pop("compression", "gzip"),
                      smoke_dir=smoke_dir, force=options.pop("force", False))


@pytest.mark.parametrize("repository", ["torchdev", "ml/torchdev", "registry.test:5000/ml/torchdev:tag"])
def test_a_repository_without_a_registry_is_a_usage_error_naming_to(repository):
    with pytest.raises(UsageError, match="names no registry: push with --to REGISTRY"):
        destination(repository)


def test_registries_with_a_host_are_destinations():
    assert destination("localhost:5000/ml/torchdev") == "localhost:5000/ml/torchdev"
    assert destination("localhost/torchdev") == "localhost/torchdev"
    assert destination(REPOSITORY) == REPOSITORY


@pytest.mark.parametrize("said, fix", [
    ("authorization failed: no basic auth credentials", "run `docker login registry.test:5000`"),
    ('failed to do request: Head "https://registry.test:5000/v2/ml/torchdev/blobs/sha256:55": dial tcp '
     "127.0.0.1:5000: connect: connection refused", "cannot reach the registry registry.test:5000"),
    ('Get "https://registry.test:5000/v2/": http: server gave HTTP response to HTTPS client',
     '"insecure-registries" in /etc/docker/daemon.json'),
    ("name unknown: repository name not known to registry", "create it there first"),
])
def test_each_registry_refusal_is_one_line_with_its_fix(said, fix):
    line = push_failure(said, "registry.test:5000")
    assert fix in line and "\n" not in line


def test_every_tag_goes_out_gzip_as_stored_under_the_images_own_id_and_no_registry_name_stays(plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, plan, tmp_path)
    engine.save = lambda *args, **kwargs: pytest.fail("the store keeps gzip: nothing to recompress")
    result = push(engine, plan, tmp_path)
    assert result.status is PushStatus.PUSHED and result.compression == "gzip"
    assert set(engine.registry) == {f"{REPOSITORY}:{r.split(':', 1)[1]}" for r in plan.references}
    assert set(engine.registry.values()) == {result.digest} == {image_id}, "the tested image's own ID"
    assert result.pinned()[0] == f"{REPOSITORY}:2.0.1-cu118-py3.10@{image_id}"
    assert not [name for name in engine.names if name.startswith("registry.test")], "registry names are kept local"
    assert engine.image_id(plan.primary_reference) == image_id


def test_zstd_pushes_a_copy_that_goes_once_pushed(plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, plan, tmp_path)
    result = push(engine, plan, tmp_path, compression="zstd")
    assert result.status is PushStatus.PUSHED and result.digest != image_id, "the zstd copy's digest"
    assert set(engine.registry.values()) == {result.digest}
    assert engine.image(result.digest) is None, "the copy is not left in the store"
    assert engine.image_id(plan.primary_reference) == image_id


def test_the_same_image_again_is_a_no_op_that_says_so(plan, tmp_path):
    engine = FakeEngine()
    built(engine, plan, tmp_path)
    first = push(engine, plan, tmp_path)
    again = push(engine, plan, tmp_path)
    assert again.status is PushStatus.UNCHANGED and again.digest == first.digest
    assert "nothing was pushed" in again.detail


def test_an_immutable_tag_naming_other_content_is_never_overwritten(plan, tmp_path):
    engine = FakeEngine()
    built(engine, plan, tmp_path)
    immutable = f"{REPOSITORY}:{plan.immutable_references[0].split(':', 1)[1]}"
    engine.registry[immutable] = "sha256:" + "e" * 64
    result = push(engine, plan, tmp_path)
    assert result.status is PushStatus.REFUSED
    assert f"already names sha256:{'e' * 64}" in result.detail and result.digest in result.detail
    assert list(engine.registry) == [immutable], "nothing else was pushed"


@pytest.mark.parametrize("failed, tested, says", [
    (0, "sha256:" + "0" * 64, "was on sha256:000000000000, not on this build"),
    (2, None, "failed 2 check(s)"),
])
def test_only_an_image_whose_last_smoke_run_passed_on_it_goes_unless_forced(plan, tmp_path, failed, tested, says):
    engine = FakeEngine()
    built(engine, plan, tmp_path, failed=failed, tested=tested)
    refused = push(engine, plan, tmp_path)
    assert refused.status is PushStatus.REFUSED and says in refused.detail and "--force" in refused.detail
    assert engine.registry == {}
    assert push(engine, plan, tmp_path, force=True).status is PushStatus.PUSHED


def test_no_smoke_result_names_the_smoke_command(plan, tmp_path):
    engine = FakeEngine()
    built(engine, plan, tmp_path)
    (tmp_path / f"{plan.name}.json").unlink()
    result = push(engine, plan, tmp_path)
    assert "has no smoke result" in result.detail and "./dev smoke --variant cu118 --flavour runtime" in result.detail


def test_a_registry_that_wants_a_login_fails_with_the_login_line(plan, tmp_path):
    engine = FakeEngine()
    built(engine, plan, tmp_path)
    engine.registry_refusal = "authorization failed: no basic auth credentials"
    result = push(engine, plan, tmp_path)
    assert result.status is PushStatus.FAILED and "docker login registry.test:5000" in result.detail
    assert not [name for name in engine.names if name.startswith("registry.test")]


def test_a_push_interrupted_half_way_leaves_no_report_and_drops_a_stale_one(tmp_path):
    engine = FakeEngine()
    ctx = make_context(engine=engine, reports=tmp_path)
    matrix = load_matrix(ctx.paths.matrix_file, environ=ctx.environ)
    cpu = read_plans(ctx.paths, matrix, [matrix.variant("cpu")], environ=ctx.environ, native=ctx.native_platform)[0]
    built(engine, cpu, tmp_path / "smoke")
    stale = tmp_path / "push" / f"{cpu.name}.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    engine.pushes_before_interrupt = 1
    assert execute(ctx, commands.push, variant="cpu", every=False, flavour="runtime", overlay=None,
                   to=REPOSITORY) == 130
    assert output(ctx)[1].endswith("torchdev: ./dev push was interrupted by SIGINT (Ctrl-C): what it had started is "
                                   "stopped and removed (containers, temporary files), what had finished stays\n")
    assert not stale.exists(), "a report may only say what was pushed"
    assert not [name for name in engine.names if name.startswith("registry.test")]
    engine.pushes_before_interrupt = None
    assert execute(ctx, commands.push, variant="cpu", every=False, flavour="runtime", overlay=None,
                   to=REPOSITORY) == 0
    report = read_push_record(stale)
    assert report.digest in report.references[0] and report.compression == "gzip"
    assert report.tags[0] == cpu.primary_reference.split(":", 1)[1]


def test_each_pushed_image_is_handed_on_with_its_record_once_written_and_a_stale_signature_record_goes(plan, tmp_path):
    """What `push --sign` hooks into: the image's push record, written already, for each image whose tags are all in
    the registry (a refused one is not handed on); a signature record from an earlier push never outlives a push."""
    engine, reports = FakeEngine(), tmp_path / "push"
    built(engine, plan, tmp_path / "smoke")
    stale = reports / f"{plan.name}.signature.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    handed: list = []

    def then(pushed_plan, record):
        handed.append((pushed_plan, record, read_push_record(reports / f"{plan.name}.json")))

    refused = make_plans(make_variant("cu117"), settings=replace(TEST_SETTINGS, repository="torchdev"))[0]  # unbuilt
    results = push_images(engine, [plan, refused], repository=REPOSITORY, compression="gzip", reports_dir=reports,
                          smoke_dir=tmp_path / "smoke", force=False, out=io.StringIO(), then=then)
    assert [r.status for r in results] == [PushStatus.PUSHED, PushStatus.REFUSED]
    assert len(handed) == 1 and handed[0][0] is plan and handed[0][1] == handed[0][2]
    assert handed[0][1].digest == results[0].digest and handed[0][1].tags == tuple(
        r.split(":", 1)[1] for r in plan.references)
    assert not stale.exists()


@pytest.fixture()
def cpu_plan():
    return make_plans(make_variant("cpu", cuda=None, platforms=(AMD64, ARM64)))[0]


def smoke_passed(smoke_dir, name: str, image_id: str, *, failed: int = 0) -> None:
    write_counts(smoke_dir / f"{name}.json", passed=12, failed=failed, image_id=image_id)


def test_a_multi_platform_image_whose_arm64_half_was_not_smoke_tested_is_refused_naming_that_run(cpu_plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, cpu_plan, tmp_path)
    engine.platforms[image_id] = ("linux/amd64", "linux/arm64")
    refused = push(engine, cpu_plan, tmp_path)
    assert refused.status is PushStatus.REFUSED and engine.registry == {}
    assert refused.detail.startswith(f"cpu.linux-arm64 has no smoke result ({tmp_path / 'cpu.linux-arm64.json'})")
    assert "`./dev smoke --variant cpu --flavour runtime --platform linux/arm64`, or push with --force" in \
        refused.detail
    smoke_passed(tmp_path, "cpu.linux-arm64", image_id, failed=1)
    failed = push(engine, cpu_plan, tmp_path)
    assert failed.status is PushStatus.REFUSED and "the last smoke run of cpu.linux-arm64 failed 1 check(s)" in \
        failed.detail


def test_a_multi_platform_image_goes_out_once_each_platform_passed_and_the_report_names_them(cpu_plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, cpu_plan, tmp_path)
    engine.platforms[image_id] = ("linux/amd64", "linux/arm64")
    smoke_passed(tmp_path, "cpu.linux-arm64", image_id)
    result = push(engine, cpu_plan, tmp_path)
    assert result.status is PushStatus.PUSHED and result.platforms == (AMD64, ARM64)
    report = read_push_record(write_report(tmp_path / "push", result))
    assert report.platforms == ("linux/amd64", "linux/arm64")
    header, _, row = push_table([result]).splitlines()[:3]
    assert "platforms" in header and "linux/amd64, linux/arm64" in row


def test_the_amd64_half_must_pass_too(cpu_plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, cpu_plan, tmp_path, tested="sha256:" + "0" * 64)
    engine.platforms[image_id] = ("linux/amd64", "linux/arm64")
    smoke_passed(tmp_path, "cpu.linux-arm64", image_id)
    refused = push(engine, cpu_plan, tmp_path)
    assert refused.status is PushStatus.REFUSED
    assert refused.detail.startswith("the last smoke run of cpu was on sha256:000000000000, not on this build")
    assert "--platform linux/amd64" in refused.detail


def test_an_arm64_only_image_needs_only_its_arm64_smoke_run(cpu_plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, cpu_plan, tmp_path)
    (tmp_path / "cpu.json").unlink()
    engine.platforms[image_id] = ("linux/arm64",)
    smoke_passed(tmp_path, "cpu.linux-arm64", image_id)
    result = push(engine, cpu_plan, tmp_path)
    assert result.status is PushStatus.PUSHED and result.platforms == (ARM64,)


def test_an_image_holding_none_of_the_variants_platforms_is_not_pushed_without_a_smoke_run(tmp_path):
    plan = make_plans(make_variant("cpu", cuda=None, platforms=(ARM64,)))[0]
    engine = FakeEngine()
    image_id = built(engine, plan, tmp_path)
    (tmp_path / "cpu.json").unlink()
    engine.platforms[image_id] = ("linux/amd64",)
    result = push(engine, plan, tmp_path)
    assert result.status is PushStatus.REFUSED, f"pushed with no smoke run at all: platforms {result.platforms}"
    assert "holds none of the variant's platforms (linux/arm64)" in result.detail and "--force" in result.detail


def test_a_re_push_that_an_earlier_push_recorded_is_known_unchanged_without_recompressing(plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, plan, tmp_path / "smoke")
    first = push(engine, plan, tmp_path / "smoke", compression="zstd")
    assert first.status is PushStatus.PUSHED
    record_copy_digest(tmp_path / "push", image_id, digest=first.digest, size=first.size)
    known = read_copy_digests(tmp_path / "push")
    assert known == {image_id: (first.digest, first.size)}
    engine.save = lambda *args, **kwargs: pytest.fail("recompressed an image the registry already holds")
    again = push_image(engine, plan, repository=REPOSITORY, compression="zstd", smoke_dir=tmp_path / "smoke",
                       force=False, copies=known)
    assert (again.status, again.digest, again.size) == (PushStatus.UNCHANGED, first.digest, first.size)
    assert "nothing was recompressed or pushed" in again.detail


def test_a_recorded_copy_the_registry_does_not_hold_is_pushed_as_usual(plan, tmp_path):
    engine = FakeEngine()
    image_id = built(engine, plan, tmp_path / "smoke")
    result = push_image(engine, plan, repository=REPOSITORY, compression="zstd", smoke_dir=tmp_path / "smoke",
                        force=False, copies={image_id: ("sha256:" + "e" * 64, 1)})
    assert result.status is PushStatus.PUSHED and result.digest != "sha256:" + "e" * 64


@pytest.mark.parametrize("content", ["", '{"passed": 30, "failed": 0, "image_id": "sha256:x"', "[]"])
def test_a_smoke_summary_that_is_not_one_is_a_refusal_naming_the_file_and_the_smoke_command(plan, tmp_path, content):
    engine = FakeEngine()
    built(engine, plan, tmp_path)
    (tmp_path / f"{plan.name}.json").write_text(content)
    result = push(engine, plan, tmp_path)
    assert result.status is PushStatus.REFUSED and engine.registry == {}
    assert result.detail.startswith(f"{tmp_path / 'cu118.json'} is not a smoke summary (")
    assert result.detail.endswith("run `./dev smoke --variant cu118 --flavour runtime --platform linux/amd64`, or push "
                                  "with --force") and "\n" not in result.detail
    assert push(engine, plan, tmp_path, force=True).status is PushStatus.PUSHED
