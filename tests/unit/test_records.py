"""The records torchdev writes under reports/ and reads back (torchdev/records.py): each reads back as written, and a
file that is not one is one line naming the file, what is wrong and the command that writes it again."""
from __future__ import annotations

import json

import pytest

from tests.helpers.context import make_context
from tests.helpers.variants import make_plans, make_variant
from torchdev import commands
from torchdev.errors import TorchdevError
from torchdev.matrix import Flavour
from torchdev.platforms import AMD64, ARM64
from torchdev.records import (COPY_DIGESTS, PushRecord, RecordError, SignatureRecord, push_record_path,
                              read_copy_digests, read_push_record, read_signature_record, read_signature_records,
                              record_copy_digest, run_name, signature_record_path, write_push_record,
                              write_signature_record)

DIGEST = "sha256:" + "1" * 64
RECORD = PushRecord(image="cu118", tags=("2.0.1-cu118-py3.10", "cu118"), repository="registry.test:5000/ml/torchdev",
                    digest=DIGEST, references=(f"registry.test:5000/ml/torchdev:2.0.1-cu118-py3.10@{DIGEST}",
                                               f"registry.test:5000/ml/torchdev:cu118@{DIGEST}"),
                    size=1 << 30, compression="gzip", platforms=("linux/amd64",))
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))


def test_a_push_record_reads_back_as_written_in_the_documented_shape(tmp_path):
    path = write_push_record(tmp_path, RECORD)
    assert path == push_record_path(tmp_path, "cu118") == tmp_path / "cu118.json"
    assert read_push_record(path) == RECORD
    assert list(json.loads(path.read_text())) == ["image", "tags", "repository", "digest", "references", "size",
                                                  "compression", "platforms"]


@pytest.mark.parametrize("content, says", [
    ("", "it is empty"),
    ('{"image": "cu118", "tags": [', "it is not JSON, or cut short"),
    ("[]", "it is not a JSON object"),
    (json.dumps({"references": [f"r@{DIGEST}"]}), "it has no 'image'"),
    (json.dumps({**RECORD.to_dict(), "size": "1 GiB"}), "its 'size' is not a number"),
    (json.dumps({**RECORD.to_dict(), "references": [1]}), "its 'references' is not a list of strings"),
])
def test_a_push_record_that_is_not_one_names_the_file_and_the_problem(tmp_path, content, says):
    (tmp_path / "cu118.json").write_text(content)
    with pytest.raises(RecordError) as caught:
        read_push_record(tmp_path / "cu118.json")
    assert str(caught.value).startswith(f"{tmp_path / 'cu118.json'} is unreadable ({says}")


def test_k8s_says_which_push_writes_a_broken_record_again(tmp_path):
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / "cu118.json").write_text('{"image": "cu118"')
    with pytest.raises(TorchdevError) as caught:
        commands.k8s(make_context(reports=tmp_path), variant="cu118", image=None, nodes=2, gpus=None, nproc=None,
                     name=None, shm_size="2Gi", train_args="--task mlp", out=str(tmp_path / "out"), overlay=None)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'push' / 'cu118.json'} is unreadable (it is not JSON, or cut short")
    assert message.endswith("): run `./dev push --variant cu118` to write it again") and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_copy_digests_accumulate_and_read_back(tmp_path):
    assert read_copy_digests(tmp_path) == {}
    record_copy_digest(tmp_path, "sha256:aa", digest=DIGEST, size=5)
    record_copy_digest(tmp_path, "sha256:bb", digest="sha256:" + "2" * 64, size=7)
    assert read_copy_digests(tmp_path) == {"sha256:aa": (DIGEST, 5), "sha256:bb": ("sha256:" + "2" * 64, 7)}


@pytest.mark.parametrize("content, says", [
    ("{", "it is not JSON"),
    ('{"sha256:aa": ["sha256:1"]}', "the entry for sha256:aa is not [digest, size]"),
])
def test_broken_copy_digests_say_to_delete_the_file(tmp_path, content, says):
    (tmp_path / COPY_DIGESTS).write_text(content)
    with pytest.raises(RecordError) as caught:
        read_copy_digests(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / COPY_DIGESTS} is unreadable ({says}")
    assert f"delete it (`rm {tmp_path / COPY_DIGESTS}`): the next `./dev push`" in str(caught.value)


SIGNED = SignatureRecord(image="cu118", repository="registry.test:5000/ml/torchdev", digest=DIGEST,
                         tags=("2.0.1-cu118-py3.10", "cu118"), key_fingerprint="sha256:" + "2" * 64,
                         signed_at="2026-12-03T08:00:00Z", sbom_sha256="3" * 64, provenance_sha256="4" * 64)


def test_a_signature_record_reads_back_as_written_beside_the_push_record_and_holds_no_key(tmp_path):
    path = write_signature_record(tmp_path, SIGNED)
    write_push_record(tmp_path, RECORD)
    assert path == signature_record_path(tmp_path, "cu118") == tmp_path / "cu118.signature.json"
    assert read_signature_record(path) == SIGNED and read_signature_records(tmp_path) == [SIGNED]
    assert read_push_record(push_record_path(tmp_path, "cu118")) == RECORD, "the two files do not collide"
    assert "PRIVATE" not in path.read_text() and "PUBLIC KEY" not in path.read_text()


def test_a_signature_record_that_is_not_one_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "cu118.signature.json").write_text('{"image": "cu118"}')
    with pytest.raises(RecordError, match=r"cu118.signature.json is unreadable \(it has no 'repository'\): delete it"):
        read_signature_records(tmp_path)


def test_a_smoke_run_is_named_after_the_image_plus_any_platform_but_amd64():
    runtime, devel = make_plans(CPU, flavours=(Flavour("runtime"), Flavour("devel")))
    assert run_name(runtime, AMD64) == "cpu" and run_name(runtime, ARM64) == "cpu.linux-arm64"
    assert run_name(devel, ARM64) == "cpu-devel.linux-arm64"
