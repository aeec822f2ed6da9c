"""Lock files: the header round trip, drift per field, uv's command line and the rendered lock (no network)."""
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.context import make_context, output
from torchdev import commands
from torchdev.errors import TorchdevError
from torchdev.runner import execute
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.variants import make_variant
from torchdev.platforms import AMD64
from torchdev.lock import (LockSpec, drift, format_header, lock_spec, parse_header, pin_problems,
                           project_text, render_lock, resolution_error, tomllib, unfit_lock, uv_command)
from torchdev.matrix import ImageSettings, Matrix
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


def test_default_indexes_are_left_to_uv_and_a_pip_index_becomes_the_default():
    assert "tool" not in tomllib.loads(project_text(replace(SPEC, index="default")))
    mirrored = tomllib.loads(project_text(replace(SPEC, pip_index="https://pypi.example/simple")))
    assert mirrored["tool"]["uv"]["index"][-1] == {"name": "packages", "url": "https://pypi.example/simple",
                                                   "default": True}


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
    """`./dev lock` and `./dev lock --check` as the README lists them: every variant, as --all."""
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
