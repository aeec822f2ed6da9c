"""Lock files: the header round trip, drift per field, uv's command line and the rendered lock (no network)."""
from dataclasses import replace
from pathlib import Path

import pytest

from torchdev.errors import TorchdevError
from torchdev.lock import (PLATFORM, LockSpec, drift, format_header, parse_header, pin_problems, project_text,
                           render_lock, resolution_error, tomllib, uv_command, write_atomically)

SPEC = LockSpec(variant="cu118", python="3.10", platform=PLATFORM, torch="2.0.1", torchvision="0.15.2",
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


def test_a_lock_is_replaced_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "locks" / "cu118.txt"
    write_atomically(path, "old\n")
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in path.parent.iterdir()] == ["cu118.txt"]
    assert path.stat().st_mode & 0o777 == 0o644
