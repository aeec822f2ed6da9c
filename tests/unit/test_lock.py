"""Lock files: the header round trip, drift per field, uv's command line and the rendered lock (no network)."""
import io
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.context import make_context, output
from tests.helpers.matrix_files import committed_matrix, write
from tests.helpers.variants import TEST_SETTINGS, make_variant
from torchdev import commands
from torchdev.checkout import read_plans
from torchdev.errors import TorchdevError
from torchdev.lock import (LockSpec, drift, format_header, lock_spec, parse_header, pin_problems, project_text,
                           regenerate_command, render_lock, require_fitting_locks, resolution_error, tomllib,
                           unfit_lock, uv_command)
from torchdev.matrix import ImageSettings, Matrix, load_matrix
from torchdev.platforms import AMD64, ARM64
from torchdev.presenter import Presentation, present
from torchdev.project import Paths, select_platforms
from torchdev.results import LockReport
from torchdev.runner import execute
from torchdev.yamlsource import Origin

SPEC = LockSpec(variant="cu118", python="3.10", platform=AMD64.wheel_platform, torch="2.0.1", torchvision="0.15.2",
                torchaudio="2.0.2", index="https://download.pytorch.org/whl/cu118", pip_index="default",
                packages=("numpy==1.26.4", "pytest==7.4.4"))

PYLOCK = {"packages": [
    {"name": "torch", "version": "2.0.1+cu118",
     "wheels": [{"url": "https://download.pytorch.org/whl/cu118/torch-2.0.1%2Bcu118-cp310-cp310-linux_x86_64.whl",
                 "hashes": {"sha256": "a" * 64}}]},
    {"name": "numpy", "version": "1.26.4",
     "sdist": {"url": "https://files.example/numpy-1.26.4.tar.gz", "hashes": {"sha256": "s" * 64}},
     "wheels": [{"url": "https://files.example/numpy-1.26.4-cp310-cp310-manylinux2014_x86_64.whl",
                 "hashes": {"sha256": "b" * 64}}]},
    {"name": "lit", "version": "15.0.7",
     "sdist": {"url": "https://files.example/lit-15.0.7.tar.gz", "hashes": {"sha256": "c" * 64}}},
    {"name": "charset-normalizer", "version": "3.5.3", "wheels": [
        {"url": "https://files.example/charset_normalizer-3.5.3-py3-none-any.whl", "hashes": {"sha256": "d" * 64}},
        {"url": "https://files.example/charset_normalizer-3.5.3-cp310-cp310-manylinux1_x86_64.whl",
         "hashes": {"sha256": "e" * 64}}]},
    {"name": "torchvision", "version": "0.15.2+cu118", "wheels": [
        {"url": "https://download.pytorch.org/whl/torchvision-0.15.2%2Bcu118-cp310-cp310-linux_x86_64.whl",
         "hashes": {"sha256": "f" * 64}}]},
    {"name": "torchaudio", "version": "2.0.2+cu118", "wheels": [
        {"url": "https://download.pytorch.org/whl/torchaudio-2.0.2%2Bcu118-cp310-cp310-linux_x86_64.whl",
         "hashes": {"sha256": "0" * 64}}]},
    {"name": "pytest", "version": "7.4.4", "wheels": [
        {"url": "https://files.example/pytest-7.4.4-py3-none-any.whl", "hashes": {"sha256": "1" * 64}}]},
]}

UNREACHABLE = """\
error: Request failed after 3 retries in 5.7s
  cause: Failed to fetch: https://download.pytorch.org/whl/cu118/torchaudio/
  cause: error sending request for url (https://download.pytorch.org/whl/cu118/torchaudio/)
  cause: client error (Connect)
  cause: failed to lookup address information: Name or service not known
"""

NO_SOLUTION = """\
error: No solution found when resolving dependencies
  cause: Because there is no version of numpy==1.26.4 and you require numpy==1.26.4, we can conclude that your \
requirements are unsatisfiable.
"""
OVERLAY = ROOT / "overlays" / "local-debian.yaml"
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CU118 = make_variant("cu118")


def rendered(spec: LockSpec = SPEC) -> str:
    return render_lock(spec=spec, pylock=PYLOCK, regenerate="./dev lock --variant cu118")


def test_the_header_round_trips_even_with_specs_that_hold_commas_and_spaces():
    spec = replace(SPEC, packages=("numpy>=1.26,<2", "pytest==7.4.4 ; python_version < '3.12'"))
    assert parse_header(format_header(spec)) == spec


def test_the_header_reads_as_key_value_words():
    assert format_header(SPEC) == (
        "# torchdev lock: variant=cu118 python=3.10 platform=x86_64-manylinux_2_28 torch=2.0.1 torchvision=0.15.2 "
        "torchaudio=2.0.2 index=https://download.pytorch.org/whl/cu118 pip_index=default package=numpy==1.26.4 "
        "package=pytest==7.4.4")


@pytest.mark.parametrize("line", ["torch==2.0.1 \\", "# torchdev lock: variant=cu118 python=3.10", ""])
def test_a_line_that_is_no_complete_header_parses_to_none(line):
    assert parse_header(line) is None


def test_a_fresh_lock_has_no_drift():
    assert drift(expected=SPEC, text=rendered()) == []


@pytest.mark.parametrize("field, value", [
    ("python", "3.11"), ("platform", "aarch64-manylinux_2_28"), ("torch", "2.0.0"), ("torchvision", "0.15.1"),
    ("torchaudio", "2.0.1"), ("index", "default"), ("pip_index", "https://pypi.example/simple"),
    ("packages", ("numpy==1.26.3", "pytest==7.4.4")),
])
def test_each_changed_field_is_named_with_both_values(field, value):
    changes = drift(expected=replace(SPEC, **{field: value}), text=rendered())
    assert len(changes) == 1 and changes[0].startswith(f"{field} ")
    shown = ", ".join(value) if isinstance(value, tuple) else value
    assert changes[0].endswith(f"{shown} in the matrix")


def test_reordered_packages_are_no_drift():
    assert drift(expected=replace(SPEC, packages=SPEC.packages[::-1]), text=rendered()) == []


def test_a_missing_or_headerless_lock_is_drift():
    assert drift(expected=SPEC, text=None) == ["no lock file"]
    assert "not a torchdev header" in drift(expected=SPEC, text="torch==2.0.1\n")[0]


def test_pins_that_disagree_with_the_header_or_lack_a_hash_are_problems():
    text = rendered().replace("torch==2.0.1+cu118", "torch==2.0.0+cu118").replace(
        "pytest==7.4.4 \\\n    --hash=sha256:" + "1" * 64, "pytest==7.4.4")
    assert pin_problems(spec=SPEC, text=text) == [
        "the lock pins torch==2.0.0+cu118, its header says 2.0.1", "pytest==7.4.4 has no --hash"]


def test_a_lock_without_a_torch_pin_is_a_problem():
    text = "\n".join(line for line in rendered().splitlines() if not line.startswith("torchaudio=="))
    assert "the lock pins no torchaudio" in pin_problems(spec=SPEC, text=text)


def test_the_lock_lists_target_wheels_with_hashes_and_an_sdist_only_without_wheels():
    lines = rendered().splitlines()
    assert lines[0] == format_header(SPEC) and lines[1] == "# Regenerate: ./dev lock --variant cu118"
    text = "\n".join(lines)
    assert "numpy==1.26.4 \\\n    --hash=sha256:" + "b" * 64 + "\n    # numpy-1.26.4-cp310" in text
    assert "s" * 64 not in text  # numpy's sdist: pip takes the wheel
    assert "lit==15.0.7 \\\n    --hash=sha256:" + "c" * 64 + "\n    # lit-15.0.7.tar.gz" in text
    assert "# torch-2.0.1+cu118-cp310-cp310-linux_x86_64.whl" in text  # %2B unquoted


def test_several_wheels_keep_each_hash_beside_its_file_name():
    text = rendered()
    block = text[text.index("charset-normalizer=="):text.index("lit==")]
    assert block.splitlines()[1:] == [
        "    --hash=sha256:" + "e" * 64 + " \\", "    --hash=sha256:" + "d" * 64,
        "    # charset_normalizer-3.5.3-cp310-cp310-manylinux1_x86_64.whl",
        "    # charset_normalizer-3.5.3-py3-none-any.whl"]


def test_a_file_without_a_sha256_cannot_be_locked():
    pylock = {"packages": [{"name": "x", "version": "1", "wheels": [{"url": "file:///w/x-1-py3-none-any.whl"}]}]}
    with pytest.raises(TorchdevError, match="variant 'cu118': x-1-py3-none-any.whl: its index gives no sha256"):
        render_lock(spec=SPEC, pylock=pylock, regenerate="")


def test_uv_resolves_for_the_variants_python_and_platform_not_the_hosts():
    command = uv_command(uv="/venv/bin/uv", project=Path("/tmp/p/pyproject.toml"), spec=SPEC)
    assert command == ["/venv/bin/uv", "--no-config", "--no-python-downloads", "pip", "compile",
                       "/tmp/p/pyproject.toml", "--python-version", "3.10", "--python-platform",
                       "x86_64-manylinux_2_28", "--format", "pylock.toml", "--no-header"]


def test_the_torch_family_comes_from_the_variants_index_only_and_the_rest_from_pip_index():
    project = tomllib.loads(project_text(SPEC))
    assert project["project"]["dependencies"] == [
        "torch==2.0.1", "torchvision==0.15.2", "torchaudio==2.0.2", "numpy==1.26.4", "pytest==7.4.4"]
    assert project["tool"]["uv"]["sources"] == {name: {"index": "torch"} for name in ("torch", "torchvision",
                                                                                       "torchaudio")}
    assert project["tool"]["uv"]["index"] == [
        {"name": "torch", "url": "https://download.pytorch.org/whl/cu118", "explicit": True}]


def test_default_indexes_are_left_to_uv_and_a_pip_index_becomes_uvs_default_index_on_its_command_line():
    """A `default = true` index in the project file is not read under --no-config (uv then asked PyPI for everything,
    whatever pip_index said): pip_index is uv's --default-index instead."""
    assert "tool" not in tomllib.loads(project_text(replace(SPEC, index="default")))
    mirrored = replace(SPEC, pip_index="https://pypi.example/simple")
    assert "pypi.example" not in project_text(mirrored)
    command = uv_command(uv="uv", project=Path("/p/pyproject.toml"), spec=mirrored)
    assert command[command.index("--default-index") + 1] == "https://pypi.example/simple"
    assert "--default-index" not in uv_command(uv="uv", project=Path("/p/pyproject.toml"), spec=SPEC)


def test_an_unreachable_index_is_one_line_naming_variant_index_and_fix():
    line = resolution_error(spec=SPEC, stderr=UNREACHABLE)
    assert "\n" not in line
    assert line.startswith("variant 'cu118': cannot reach index https://download.pytorch.org/whl/cu118: "
                           "failed to lookup address information")
    assert "set an overlay index that is reachable" in line


def test_an_unsatisfiable_matrix_is_one_line_with_uvs_reason():
    line = resolution_error(spec=SPEC, stderr=NO_SOLUTION)
    assert "\n" not in line
    assert line.startswith("variant 'cu118': uv cannot resolve torch 2.0.1 for Python 3.10: No solution found")
    assert "there is no version of numpy==1.26.4" in line


LOCK_MATRIX = ImageSettings("torchdev", ("{variant}",), "default", ("numpy==1.26.4",))


def lock_for(tmp_path, **fields):
    """A lock file whose header fits cu117 as declared here; `fields` then change the variant, not the lock."""
    path = tmp_path / "cu117.lock.txt"
    variant = make_variant("cu117", cuda="11.7", lock=str(path))
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml",))
    path.write_text(format_header(lock_spec(matrix=matrix, variant=variant)) + "\n" + "\n".join(
        f"{name}=={version} --hash=sha256:{'a' * 64}" for name, version in
        (("torch", "2.0.1"), ("torchvision", "0.15.2"), ("torchaudio", "2.0.2"), ("numpy", "1.26.4"))) + "\n")
    return replace(variant, **fields), path


def test_a_lock_that_fits_or_no_lock_at_all_lets_the_build_go(tmp_path):
    variant, path = lock_for(tmp_path)
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml",))
    assert unfit_lock(matrix=matrix, variant=variant) == ""
    renamed = replace(variant, name="cu117-copy")
    assert unfit_lock(matrix=matrix, variant=renamed) == "", "the same files fit a copy"
    path.unlink()
    assert unfit_lock(matrix=matrix, variant=variant) == ""


def test_a_lock_that_does_not_fit_names_the_field_and_the_lock_command(tmp_path):
    variant, path = lock_for(tmp_path, python="3.11")
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml",))
    problem = unfit_lock(matrix=matrix, variant=variant)
    assert problem == (f"the lock {path} does not fit variant 'cu117' on linux/amd64 (python 3.10 in the lock, 3.11 "
                       "in the matrix): run `./dev lock --variant cu117`")


def test_an_overlay_sharing_images_yamls_lock_is_told_to_get_its_own_not_to_overwrite_it(tmp_path):
    variant, path = lock_for(tmp_path, python="3.11")
    overlay = tmp_path / "site.yaml"
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml", overlay))
    shared = unfit_lock(matrix=matrix, variant=variant)
    assert f"the overlay {overlay} changes the variant but shares images.yaml's lock" in shared
    assert f"`lock: {tmp_path / 'site' / 'cu117.lock.txt'}` under variants.cu117" in shared
    assert shared.endswith(f"then run `./dev lock --variant cu117 --overlay {overlay}`")
    with_own_lock = replace(matrix, origins={("variants", "cu117", "lock"): Origin(str(overlay), 3)})
    owned = unfit_lock(matrix=with_own_lock, variant=variant)
    assert owned.endswith(f": run `./dev lock --variant cu117 --overlay {overlay}`") and "shares" not in owned


def test_build_refuses_an_unfit_lock_before_it_asks_the_engine_anything(tmp_path):
    """images.yaml's cu117 has a committed lock for Python 3.10; an overlay that says 3.11 and names no lock."""
    overlay = tmp_path / "py311.yaml"
    overlay.write_text('variants:\n  cu117:\n    python: "3.11"\n')
    result = run_cli("build", "--variant", "cu117", "--overlay", str(overlay),
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "TORCHDEV_OVERLAY": ""})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("torchdev: the lock locks/cu117.txt does not fit variant 'cu117' on linux/amd64 "
                                    "(python 3.10 in the lock, 3.11 in the matrix): the overlay")
    assert "give the overlay its own `lock:" in result.stderr and "no Docker engine" not in result.stderr


# --- nothing installed unverified: no lock, no build, unless --unlocked says so -----------------------------------

def test_a_variant_without_a_lock_is_refused_before_the_engine_naming_the_lock_command_and_unlocked(tmp_path):
    from tests.helpers.context import make_context, output
    from tests.helpers.fake_engine import FakeEngine
    from torchdev import commands
    from torchdev.runner import execute

    engine = FakeEngine()
    ctx = make_context(engine=engine, reports=tmp_path)
    for command, options in ((commands.build, {"every": False, "dry_run": False}),
                             (commands.up, {}), (commands.verify_repro, {}),
                             (commands.run_smoke, {"every": False, "gpus": "none", "build_missing": True})):
        assert execute(ctx, command, variant="cu118", overlay=None, **options) == 2, command
        assert output(ctx)[1].splitlines()[-1] == (
            "torchdev: variant 'cu118' has no lock for linux/amd64 (locks/cu118.txt), so nothing pip installs in its "
            "image would be checked against a hash: run `./dev lock --variant cu118` (and commit the lock), or pass "
            "--unlocked to build it unpinned")
    assert engine.requests == [] and engine.ran == [] and engine.compose_calls == []


def test_unlocked_builds_say_so_in_the_table_and_the_build_and_a_locked_variant_is_the_same_with_or_without_it(
        tmp_path):
    from tests.helpers.context import make_context, output
    from tests.helpers.fake_engine import FakeEngine
    from torchdev import commands
    from torchdev.runner import execute

    engine = FakeEngine()
    engine.reproducible = True
    ctx = make_context(engine=engine, reports=tmp_path)
    assert execute(ctx, commands.build, variant="cu118", every=False, dry_run=False, overlay=None, unlocked=True) == 0
    assert engine.requests[-1].build_args["UNLOCKED"] == "1"
    table = output(ctx)[0]
    assert "cu118  built UNLOCKED" in table
    assert "note: cu118 was built with --unlocked: pip resolved its packages at build time, none is checked against " \
           "a hash" in table
    for unlocked in (False, True):
        assert execute(ctx, commands.build, variant="cu117", every=False, dry_run=False, overlay=None,
                       unlocked=unlocked) == 0
    assert "UNLOCKED" not in engine.requests[-1].build_args
    assert engine.requests[-1] == replace(engine.requests[-2], metadata_file=engine.requests[-1].metadata_file,
                                          contexts=engine.requests[-1].contexts)


def test_the_dockerfile_refuses_a_platform_without_a_lock_unless_unlocked_and_the_manifest_records_it():
    """Even a build that bypasses ./dev (docker buildx build by hand) installs nothing unpinned without UNLOCKED=1."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert 'elif [ "$UNLOCKED" != 1 ]; then' in text and "or build with --unlocked" in text
    assert text.index("ARG UNLOCKED") < text.index('elif [ "$UNLOCKED" != 1 ]')
    assert '$(if [ ! -s "$lock" ]; then echo --unlocked; fi)' in text


# --- the lock of a variant's added packages ------------------------------------------------------------------------

from torchdev.lock import (AddedSpec, added_conflicts, added_drift, added_spec, already_locked,  # noqa: E402
                           lock_variants, pins_text, render_added_lock)

MAIN = rendered()
ADDED = make_variant("cu118", added_packages=("einops==0.8.1",))
EINOPS = {"name": "einops", "version": "0.8.1", "wheels": [
    {"url": "https://files.example/einops-0.8.1-py3-none-any.whl", "hashes": {"sha256": "9" * 64}}]}


def added_rendered(main: str = MAIN) -> str:
    spec = added_spec(variant=ADDED, platform=AMD64, main_text=main)
    return render_added_lock(spec=spec, pylock={"packages": [*PYLOCK["packages"], EINOPS]}, main_text=main,
                             regenerate="./dev lock --variant cu118")


def test_the_added_lock_holds_only_what_the_main_lock_does_not_and_names_the_main_lock_it_was_held_to():
    text = added_rendered()
    header = parse_header(text.partition("\n")[0], AddedSpec)
    assert header == added_spec(variant=ADDED, platform=AMD64, main_text=MAIN)
    assert header.packages == ("einops==0.8.1",) and len(header.main) == 64
    assert [line for line in text.splitlines() if not line.startswith(("#", " "))] == ["einops==0.8.1 \\"]
    assert added_drift(expected=header, text=text) == []
    assert parse_header(text.partition("\n")[0]) is None, "not a main lock's header"


def test_the_main_pins_are_the_constraints_uv_resolves_the_added_packages_within():
    assert pins_text(MAIN).splitlines() == ["charset-normalizer==3.5.3", "lit==15.0.7", "numpy==1.26.4",
                                            "pytest==7.4.4", "torch==2.0.1+cu118", "torchaudio==2.0.2+cu118",
                                            "torchvision==0.15.2+cu118"]


def test_an_added_lock_drifts_when_the_packages_or_the_main_lock_change():
    text = added_rendered()
    moved = added_spec(variant=replace(ADDED, added_packages=("einops==0.8.2",)), platform=AMD64, main_text=MAIN)
    assert added_drift(expected=moved, text=text) == [
        "packages einops==0.8.1 in the lock, einops==0.8.2 in the matrix"]
    relocked = added_spec(variant=ADDED, platform=AMD64, main_text=MAIN + "# again\n")
    assert added_drift(expected=relocked, text=text) == ["the main lock has changed since it was resolved against it"]
    assert added_drift(expected=moved, text=None) == ["no lock of the added packages"]


def test_an_added_package_the_lock_pins_otherwise_is_named_with_both_versions_and_the_same_one_is_already_there():
    [line] = added_conflicts(("numpy==2.0.0", "einops==0.8.1"), MAIN, lock_name="locks/cu118.txt")
    assert line.startswith("numpy==2.0.0 conflicts with the lock's numpy==1.26.4 (locks/cu118.txt)")
    assert already_locked(("numpy==1.26.4", "einops==0.8.1"), MAIN) == ("numpy==1.26.4",)


def test_lock_check_reports_a_missing_added_lock_and_build_refuses_it(tmp_path):
    variant, path = lock_for(tmp_path)
    variant = replace(variant, added_packages=("einops==0.8.1",))
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml",))
    problem = unfit_lock(matrix=matrix, variant=variant)
    assert problem.startswith(f"the lock of the added packages {tmp_path / 'cu117.lock.added.txt'} does not fit "
                              "variant 'cu117' on linux/amd64 (no lock of the added packages): run `./dev lock")
    import io
    problems = lock_variants(matrix, [variant], check=True, out=io.StringIO())
    assert problems == [f"lock drift: variant 'cu117' on linux/amd64 ({tmp_path / 'cu117.lock.added.txt'}): no lock "
                        "of the added packages: run `./dev lock --variant cu117`"]


def test_lock_writes_the_added_lock_after_the_main_one_and_removes_one_nothing_needs(tmp_path, monkeypatch):
    import io
    from torchdev import lock as locks
    variant, path = lock_for(tmp_path)
    variant = replace(variant, added_packages=("einops==0.8.1",))
    matrix = Matrix(image=LOCK_MATRIX, variants=(variant,), sources=(ROOT / "images.yaml",))
    asked: list[str] = []

    def resolve(spec, *, constraints="", error=None, **_logins):
        asked.append(constraints)
        return {"packages": PYLOCK["packages"] + ([EINOPS] if constraints else [])}
    monkeypatch.setattr(locks, "resolve", resolve)
    assert lock_variants(matrix, [variant], check=False, out=io.StringIO()) == []
    added = tmp_path / "cu117.lock.added.txt"
    assert asked[0] == "" and "torch==2.0.1+cu118" in asked[1], "the main lock first, the added one within it"
    assert parse_header(added.read_text().partition("\n")[0], AddedSpec).main == added_spec(
        variant=variant, platform=AMD64, main_text=path.read_text()).main
    out = io.StringIO()
    assert lock_variants(matrix, [replace(variant, added_packages=())], check=False, out=out) == []
    assert not added.exists() and "no added packages: removed" in out.getvalue()


@pytest.mark.parametrize("dry_run", [False, True], ids=["build", "dry-run"])
def test_a_dry_run_checks_the_locks_as_the_build_does_with_the_same_line_and_status(tmp_path, dry_run):
    """--dry-run is the whole plan: a lock that no longer fits is reported there, not minutes into a build. Neither
    asks the engine anything (make_context gives none)."""
    overlay = tmp_path / "py311.yaml"
    overlay.write_text('variants:\n  cu117:\n    python: "3.11"\n')
    ctx = make_context(environ={"TORCHDEV_OVERLAY": ""})
    status = execute(ctx, commands.build, variant="cu117", every=False, dry_run=dry_run, overlay=str(overlay))
    out, err = output(ctx)
    assert (status, out, err.count("\n")) == (1, "", 1), err
    assert err.startswith("torchdev: the lock locks/cu117.txt does not fit variant 'cu117' on linux/amd64 (python "
                          "3.10 in the lock, 3.11 in the matrix)")


def test_lock_without_a_variant_acts_on_every_variant(tmp_path):
    """`./dev lock` and `./dev lock --check` as docs/images.md lists them: every variant, as --all."""
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    ctx = make_context(environ={"TORCHDEV_OVERLAY": ""})
    status = execute(ctx, commands.lock, variant=None, every=False, check=True, overlay=None)
    out, err = output(ctx)
    assert "cu117 on linux/amd64: locks/cu117.txt matches the matrix" in out and status in (0, 1)
    for name in ("cpu", "cu118"):  # unlocked here (download.pytorch.org is out of reach): drift; or locked: a match
        assert f"{name} on linux/amd64: " in out or f"variant '{name}' on linux/amd64" in err, (out, err)
    both = execute(ctx, commands.lock, variant="cpu", every=True, check=True, overlay=None)
    assert both == 2 and output(ctx)[1].endswith("torchdev: --variant and --all contradict each other: give one of "
                                                 "them\n")


def test_an_arm64_lock_is_resolved_for_aarch64_and_an_amd64_lock_there_drifts_naming_the_platform():
    matrix = Matrix(image=TEST_SETTINGS, variants=(CPU,), sources=())
    assert lock_spec(matrix=matrix, variant=CPU, platform=ARM64).platform == "aarch64-manylinux_2_28"
    amd64_header = format_header(lock_spec(matrix=matrix, variant=CPU, platform=AMD64))
    changes = drift(expected=lock_spec(matrix=matrix, variant=CPU, platform=ARM64), text=amd64_header + "\n")
    assert changes[0] == "platform x86_64-manylinux_2_28 in the lock, aarch64-manylinux_2_28 in the matrix"


def locked(path: Path, matrix: Matrix, variant, platform) -> None:
    path.write_text(format_header(lock_spec(matrix=matrix, variant=variant, platform=platform)) + "\n" + "".join(
        f"{name}=={version} --hash=sha256:{'a' * 64}\n" for name, version in
        (("torch", "2.0.1"), ("torchvision", "0.15.2"), ("torchaudio", "2.0.2"))))


def test_an_amd64_lock_copied_to_the_arm64_name_does_not_fit_and_the_fix_names_the_platform(tmp_path):
    variant = replace(CPU, lock=str(tmp_path / "cpu.txt"))
    matrix = Matrix(image=TEST_SETTINGS, variants=(variant,), sources=(ROOT / "images.yaml",))
    locked(tmp_path / "cpu.txt", matrix, variant, AMD64)
    locked(tmp_path / "cpu.linux-arm64.txt", matrix, variant, AMD64)
    assert unfit_lock(matrix=matrix, variant=variant, platform=AMD64) == ""
    problem = unfit_lock(matrix=matrix, variant=variant, platform=ARM64)
    assert problem == (f"the lock {tmp_path / 'cpu.linux-arm64.txt'} does not fit variant 'cpu' on linux/arm64 "
                       "(platform x86_64-manylinux_2_28 in the lock, aarch64-manylinux_2_28 in the matrix): run "
                       "`./dev lock --variant cpu --platform linux/arm64`")


def test_lock_check_judges_each_platform_of_each_variant(tmp_path):
    variant = replace(CPU, lock=str(tmp_path / "cpu.txt"))
    matrix = Matrix(image=TEST_SETTINGS, variants=(variant,), sources=(ROOT / "images.yaml",))
    locked(tmp_path / "cpu.txt", matrix, variant, AMD64)
    out = io.StringIO()
    problems = lock_variants(matrix, [variant], check=True, out=out)
    assert f"cpu on linux/amd64: {tmp_path / 'cpu.txt'} matches the matrix" in out.getvalue()
    assert present(LockReport(tuple(problems))) == Presentation(err=(
        f"torchdev: lock drift: variant 'cpu' on linux/arm64 ({tmp_path / 'cpu.linux-arm64.txt'}): no lock "
        "file: run `./dev lock --variant cpu --platform linux/arm64`",), status=1)
    assert lock_variants(matrix, [variant], check=True, platforms=lambda v: (AMD64,), out=io.StringIO()) == []
    locked(tmp_path / "cpu.linux-arm64.txt", matrix, variant, ARM64)
    assert lock_variants(matrix, [variant], check=True, out=io.StringIO()) == []


def test_a_variant_with_one_platform_regenerates_without_platform():
    matrix = Matrix(image=TEST_SETTINGS, variants=(CU118,), sources=())
    assert regenerate_command(matrix=matrix, variant=CU118) == "./dev lock --variant cu118"
    arm = replace(CPU, platforms=(ARM64,))
    assert regenerate_command(matrix=matrix, variant=arm, platform=ARM64) == "./dev lock --variant cpu"


def test_the_ci_overlays_cpu_is_arm64_only_with_an_arm64_lock_that_fits():
    matrix = committed_matrix(OVERLAY)
    cpu = matrix.variant("cpu")
    assert cpu.platforms == (ARM64,) and matrix.variant("cu117").platforms == (AMD64,)
    path = matrix.lock_file(cpu, ARM64)
    assert path == ROOT / "overlays" / "local-debian" / "cpu.lock.linux-arm64.txt" and path.is_file()
    text = path.read_text()
    assert drift(expected=lock_spec(matrix=matrix, variant=cpu, platform=ARM64), text=text) == []
    assert unfit_lock(matrix=matrix, variant=cpu, platform=ARM64) == ""
    assert text.splitlines()[1] == f"# Regenerate: {regenerate_command(matrix=matrix, variant=cpu, platform=ARM64)}"
    assert select_platforms(cpu, platform=None, native=AMD64) == (ARM64,), "an amd64 host builds it emulated"


def test_a_build_refuses_an_arm64_lock_that_does_not_fit_naming_the_platform(tmp_path):
    """An overlay that takes the CI overlay's arm64 lock for images.yaml's cpu (Python 3.10, the CPU index)."""
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    overlay = write(tmp_path, "variants:\n  cpu:\n    lock: overlays/local-debian/cpu.lock.txt\n"
                              "    platforms: [linux/arm64]\n", name="arm.yaml")
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    plans = read_plans(Paths.at(ROOT), matrix, [matrix.variant("cpu")])
    with pytest.raises(TorchdevError) as caught:
        require_fitting_locks(matrix, plans)
    message = str(caught.value)
    assert message.startswith("the lock overlays/local-debian/cpu.lock.linux-arm64.txt does not fit variant 'cpu' "
                              "on linux/arm64 (")
    assert "python 3.11 in the lock, 3.10 in the matrix" in message and "\n" not in message
    assert message.endswith(f": run `./dev lock --variant cpu --overlay {overlay}`")
