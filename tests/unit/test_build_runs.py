"""Builds through the fake engine: tags move all together or not at all, whatever goes wrong, in seconds."""
from dataclasses import replace

import pytest

from tests.helpers.fake_engine import FakeEngine
from tests.helpers.variants import make_plans, make_variant
from torchdev.build import BuildStatus, apply_tags, build_all, exit_status, run_build
from torchdev.errors import TorchdevError
from torchdev.plan import OCI_OUTPUT


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


def test_an_interrupted_build_moves_no_tag_stops_the_others_and_exits_130(engine, tmp_path):
    plans = make_plans(make_variant("cu118"), make_variant("cpu", cuda=None))
    old = engine.add_image(*plans[0].references)
    engine.builds = [KeyboardInterrupt()]
    results = build_all(engine, plans, log_dir=tmp_path)
    assert [(r.image, r.status) for r in results] == [("cu118", BuildStatus.INTERRUPTED)], "cpu must not start"
    assert exit_status(results) == 130
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


def test_a_reproducible_build_goes_through_an_archive_and_takes_its_tags_only_with_the_recorded_digest(engine,
                                                                                                       tmp_path):
    plan, = make_plans(make_variant("cu118"))
    first = run_build(engine, plan, log_dir=tmp_path, reproducible=True)
    output = engine.requests[0].output
    assert first.status is BuildStatus.BUILT and output.dest and output == OCI_OUTPUT.to(output.dest)
    assert [engine.image_id(reference) for reference in plan.references] == [first.image_id] * len(plan.references)
    recorded = replace(plan, variant=replace(plan.variant, digest="sha256:" + "e" * 64))
    other = run_build(engine, replace(recorded, references=("torchdev:elsewhere",)), log_dir=tmp_path,
                      reproducible=True)
    assert other.status is BuildStatus.FAILED and f"images.yaml expects sha256:{'e' * 64}" in other.cause
    assert engine.image_id("torchdev:elsewhere") is None
    matching = replace(recorded, variant=replace(plan.variant, digest=first.image_id))
    assert run_build(engine, matching, log_dir=tmp_path, reproducible=True).status is BuildStatus.BUILT
