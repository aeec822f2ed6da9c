"""The signing options as commands take them and the presenter shows them: `images --sbom/--provenance` (the
document on stdout, or a "wrote" line with --out), `push --sign`'s unsigned images (failure lines, exit 1) and
`verify`'s refusals of what names no pushed image. What signing and verifying decide is tests/unit/test_trust.py's;
the real cosign and registry are tests/integration/test_signing.py's."""
from __future__ import annotations

import json

import pytest

from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.signing import sample_manifest
from torchdev import commands
from torchdev.checkout import read_plans
from torchdev.engine import RunResult, RunStatus
from torchdev.errors import UsageError
from torchdev.matrix import load_matrix
from torchdev.presenter import present
from torchdev.push import PushResult, PushStatus
from torchdev.results import PushReport
from torchdev.runner import execute

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


@pytest.fixture()
def built(tmp_path):
    """The cpu image built in a fake engine that answers `cat` of its manifest and os-release; (context, plan)."""
    engine = FakeEngine()
    ctx = make_context(engine=engine, reports=tmp_path / "reports")
    matrix = load_matrix(ctx.paths.matrix_file, environ=ctx.environ)
    plan = read_plans(ctx.paths, matrix, [matrix.variant("cpu")], environ=ctx.environ, native=ctx.native_platform)[0]
    engine.add_image(*plan.references, labels={"io.torchdev.variant": "cpu"})
    files = {"/usr/share/torchdev/manifest.json": json.dumps(sample_manifest()), "/etc/os-release": OS_RELEASE}
    engine.runs[plan.primary_reference] = lambda spec: RunResult(RunStatus.EXITED, 0, files[spec.command[-1]])
    return ctx, plan


def test_the_sbom_goes_to_stdout_as_written_or_into_out_with_one_line_saying_what_it_is(built, tmp_path):
    ctx, plan = built
    assert execute(ctx, commands.list_images, overlay=None, sbom="cpu") == 0
    shown, _ = output(ctx)
    document = json.loads(shown)
    assert document["spdxVersion"] == "SPDX-2.3" and document["name"].startswith(plan.primary_reference.split(":")[0])
    target = tmp_path / "sbom.json"
    assert execute(ctx, commands.list_images, overlay=None, sbom="cpu", out=str(target)) == 0
    assert target.read_text() == shown, "the same bytes either way"
    image_id = ctx.engine().image_id(plan.primary_reference)
    assert output(ctx)[0][len(shown):] == (f"wrote {target}: the sbom of {plan.primary_reference.split(':')[0]}@"
                                            f"{image_id}, as built (not pushed yet: its digest in this engine)\n")


@pytest.mark.parametrize("options, says", [
    (dict(manifest="cpu", sbom="cpu"), "--manifest, --sbom and --provenance each show one thing"),
    (dict(sbom="cpu", provenance="cpu"), "--manifest, --sbom and --provenance each show one thing"),
    (dict(manifest="cpu", out="x.json"), "--out writes the SBOM or the provenance"),
])
def test_images_options_that_do_not_go_together_are_usage_errors_before_the_engine_is_asked(options, says):
    with pytest.raises(UsageError, match=says):
        commands.list_images(make_context(), overlay=None, **options)


def test_images_pushed_but_not_signed_are_failure_lines_and_exit_1():
    pushed = PushResult("cpu", PushStatus.PUSHED, ("registry.test:5000/ml/torchdev:cpu",), "sha256:" + "1" * 64)
    shown = present(PushReport((pushed,), ("cpu: pushed, but not signed: signing ... failed: denied",)))
    assert shown.status == 1 and shown.err == ("torchdev: cpu: pushed, but not signed: signing ... failed: denied",)
    assert present(PushReport((pushed,))).status == 0


@pytest.mark.parametrize("reference", ["torchdev:cpu", "registry.test:5000/ml/torchdev"])
def test_verify_refuses_what_names_no_pushed_image_before_it_looks_for_cosign(reference):
    with pytest.raises(UsageError, match="name a pushed image, REGISTRY/NAME:TAG or REGISTRY/NAME@sha256"):
        commands.verify(make_context(), reference=reference, key="cosign.pub")
