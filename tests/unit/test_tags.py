"""Tags are pure functions of the matrix's templates, the variant and the build stamp (day, commit, inputs)."""
from dataclasses import replace
from datetime import date

from tests.helpers.variants import make_variant
from torchdev.matrix import ImageSettings
from torchdev.tags import BuildStamp, image_tags, immutable_tags

SETTINGS = ImageSettings(repository="torchdev", pip_index="default", packages=("numpy==1.26.4",),
                         tag_templates=("{torch}-{variant}-py{python}", "{torch_minor}-{variant}", "{variant}",
                                        "{torch}-{variant}-py{python}-{date}-{git_sha}-{inputs}"))
CU118 = make_variant("cu118", index="https://download.pytorch.org/whl/cu118")
CPU = make_variant("cpu", cuda=None)
STAMP = BuildStamp(day=date(2026, 11, 29), git_sha="abc1234", inputs="9f3e0c1a")


def test_tags_follow_the_pytorch_2_0_scheme():
    assert image_tags(settings=SETTINGS, variant=CU118, stamp=STAMP) == (
        "2.0.1-cu118-py3.10", "2.0-cu118", "cu118", "2.0.1-cu118-py3.10-20261129-abc1234-9f3e0c1a")
    assert immutable_tags(settings=SETTINGS, variant=CU118, stamp=STAMP) == (
        "2.0.1-cu118-py3.10-20261129-abc1234-9f3e0c1a",)


def test_the_immutable_tag_changes_with_the_day_the_commit_and_the_inputs():
    stamps = (STAMP, replace(STAMP, day=date(2026, 11, 30)), replace(STAMP, git_sha="def5678"),
              replace(STAMP, inputs="00000000"))
    assert len({image_tags(settings=SETTINGS, variant=CU118, stamp=s)[-1] for s in stamps}) == 4


def test_templates_that_render_alike_give_one_tag():
    settings = ImageSettings("torchdev", ("{variant}", "{variant}", "latest-{cuda}"), "default", ())
    assert image_tags(settings=settings, variant=CPU, stamp=STAMP) == ("cpu", "latest-cpu")
