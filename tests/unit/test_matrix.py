"""images.yaml validation: every kind of bad input gives one line naming file, line, variant and key."""
from pathlib import Path

import pytest

from torchdev.errors import ConfigError, UsageError
from torchdev.matrix import load_matrix

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
image:
  repository: torchdev
  tags: ["{torch}-{variant}-py{python}", "{variant}"]
variants:
  cu118:
    base: nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04
    python: "3.10"
    torch: 2.0.1
    torchvision: 0.15.2
    torchaudio: 2.0.2
    index: https://download.pytorch.org/whl/cu118
    cuda: "11.8"
    cudnn: 8
"""


def write(tmp_path: Path, text: str, name: str = "images.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load_matrix(write(tmp_path, text), **kwargs)
    assert caught.value.exit_status == 2
    return str(caught.value)


def test_the_committed_matrix_declares_the_three_pytorch_2_0_variants():
    matrix = load_matrix(ROOT / "images.yaml", overlay=None) if not (ROOT / "images.local.yaml").exists() else None
    if matrix is None:
        pytest.skip("images.local.yaml is present and would be merged in")
    assert [v.name for v in matrix.variants] == ["cpu", "cu117", "cu118"]
    assert {(v.torch, v.torchvision, v.torchaudio) for v in matrix.variants} == {("2.0.1", "0.15.2", "2.0.2")}
    assert [v.cuda for v in matrix.variants] == [None, "11.7", "11.8"]
    assert matrix.variant("cu118").index.endswith("/whl/cu118")


def test_a_valid_file_parses_into_typed_variants(tmp_path):
    variant = load_matrix(write(tmp_path, VALID)).variant("cu118")
    assert (variant.python, variant.cuda, variant.cudnn, variant.torch_minor) == ("3.10", "11.8", 8, "2.0")


@pytest.mark.parametrize("change, expected", [
    (("torch: 2.0.1", "torch: 2.1.0"), "images.yaml:8: variant 'cu118': key 'torch': '2.1.0' is not a PyTorch 2.0"),
    (('python: "3.10"', "python: 3.10"), "images.yaml:7: variant 'cu118': key 'python': expected a string, got a number (3.1): "
                                           'write it quoted: python: "3.10"'),
    (("cudnn: 8", "cudnn: eight"), "images.yaml:13: variant 'cu118': key 'cudnn': expected the cuDNN major version"),
    (("    cudnn: 8\n", "    cudnn: 8\n    colour: blue\n"), "images.yaml:14: variant 'cu118': key 'colour': unknown key"),
    (("    cudnn: 8\n", ""), "images.yaml:5: variant 'cu118': missing key 'cudnn'"),
    (("base: nvidia/cuda:11.8.0", "base: NVIDIA/Cuda:11.8.0"), "key 'base': 'NVIDIA/Cuda:11.8.0-cudnn8-runtime-ubuntu22.04' is not an image repository name: lower-case"),
    (("index: https://", "index: ftp://"), "key 'index': 'ftp://download.pytorch.org/whl/cu118' is not a URL"),
    (("torchvision: 0.15.2", "torchvision: 0.15.1"), "key 'torchvision': 0.15.1 is not built for torch 2.0.1: use 0.15.2"),
    (('cuda: "11.8"', "cuda: null"), "key 'cudnn': must be null when cuda is null"),
    (("{variant}\"]", "{flavour}\"]"), "images.yaml:3: image: key 'tags': '{flavour}' has the unknown placeholder {flavour}: use the placeholders "
                                         "variant, torch,"),
    (("repository: torchdev", "repository: Torch Dev"), "image: key 'repository': 'Torch Dev' is not an image repository name"),
])
def test_each_bad_field_is_named_with_its_file_line_variant_and_key(tmp_path, change, expected):
    old, new = change
    assert old in VALID
    assert expected in error_for(tmp_path, VALID.replace(old, new))


def test_every_problem_is_reported_at_once_one_per_line(tmp_path):
    message = error_for(tmp_path, VALID.replace("torch: 2.0.1", "torch: 1.13.1").replace("cudnn: 8", "cudnn: x"))
    assert len(message.splitlines()) == 2


def test_a_duplicate_variant_is_an_error_not_a_silent_override(tmp_path):
    duplicated = VALID + VALID[VALID.index("  cu118:"):]
    assert "duplicate key 'cu118' (first at line 5)" in error_for(tmp_path, duplicated)


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("image: [unclosed\n", "invalid YAML"),
    ("image:\n  repository: torchdev\n  tags: [\"{variant}\"]\nvariants: {}\n", "expected a non-empty mapping of variants"),
    ("imagez: {}\nvariants: {}\n", "key 'imagez': unknown key"),
])
def test_unusable_files_are_rejected_with_the_reason(tmp_path, text, expected):
    assert expected in error_for(tmp_path, text)


def test_invalid_yaml_names_the_line(tmp_path):
    assert error_for(tmp_path, VALID + "  broken: [\n").startswith(f"{tmp_path / 'images.yaml'}:")


def test_an_overlay_redirects_base_and_index_and_keeps_the_rest(tmp_path):
    overlay = write(tmp_path, "variants:\n  cu118:\n    base: mirror.local:5000/cuda:11.8\n    index: default\n",
                    "mirror.yaml")
    matrix = load_matrix(write(tmp_path, VALID), overlay=str(overlay))
    variant = matrix.variant("cu118")
    assert (variant.base, variant.index, variant.cuda) == ("mirror.local:5000/cuda:11.8", "default", "11.8")
    assert matrix.sources[-1] == matrix.overlay == overlay


def test_the_parsed_matrix_knows_where_each_key_was_written_and_which_file_is_the_overlay(tmp_path):
    overlay = write(tmp_path, "variants:\n  cu118:\n    base: mirror.local:5000/cuda:11.8\n", "mirror.yaml")
    matrix = load_matrix(write(tmp_path, VALID), overlay=str(overlay))
    assert str(matrix.origin("variants", "cu118", "base")) == f"{overlay}:3"
    assert str(matrix.origin("variants", "cu118", "python")) == f"{tmp_path / 'images.yaml'}:7"
    assert matrix.origin("variants", "cu118", "lock") is None, "declared nowhere"
    assert matrix.declared_by_overlay("variants", "cu118", "base")
    assert not matrix.declared_by_overlay("variants", "cu118", "python")
    alone = load_matrix(write(tmp_path, VALID), environ={})
    assert alone.overlay is None and not alone.declared_by_overlay("variants", "cu118", "base")


def test_an_overlay_can_add_a_variant_and_is_validated_naming_its_own_file(tmp_path):
    overlay = write(tmp_path, "variants:\n  tiny:\n    base: debian:12\n    torch: 2.0.1\n", "extra.yaml")
    message = error_for(tmp_path, VALID, overlay=str(overlay))
    assert f"{overlay}:2: variant 'tiny': missing key 'python'" in message


def test_images_local_yaml_beside_the_matrix_is_applied_automatically(tmp_path):
    write(tmp_path, "image:\n  repository: registry.example:5000/team/torchdev\n", "images.local.yaml")
    assert load_matrix(write(tmp_path, VALID), environ={}).image.repository == "registry.example:5000/team/torchdev"


def test_the_overlay_variable_names_a_missing_file(tmp_path):
    assert "overlay file not found" in error_for(tmp_path, VALID, environ={"TORCHDEV_OVERLAY": str(tmp_path / "no")})


def test_an_unknown_variant_lists_the_known_ones_and_where_they_are_declared(tmp_path):
    with pytest.raises(UsageError, match="unknown variant 'cu121': images.yaml declares cu118$"):
        load_matrix(write(tmp_path, VALID)).variant("cu121")
    overlay = write(tmp_path, "variants:\n  cu118:\n    python: \"3.11\"\n", name="local.yaml")
    with pytest.raises(UsageError) as caught:
        load_matrix(write(tmp_path, VALID), overlay=str(overlay)).variant("cu121")
    assert str(caught.value) == f"unknown variant 'cu121': images.yaml with the overlay {overlay} declares cu118"


def test_the_matrix_table_shows_which_variants_are_locked_and_snapshotted():
    from tests.helpers.context import make_context, output
    from torchdev.commands import show_matrix
    from torchdev.runner import execute

    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    ctx = make_context()
    assert execute(ctx, show_matrix, overlay=None) == 0
    rows = {line.split()[0]: line for line in output(ctx)[0].splitlines()[2:5]}
    assert "locks/cu117.txt" in rows["cu117"] and " none " in rows["cpu"]
    matrix = load_matrix(ROOT / "images.yaml")
    assert all(f" {matrix.variant(name).apt_snapshot} " in row for name, row in rows.items())
