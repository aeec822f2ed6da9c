"""The provenance (torchdev/provenance.py): a SLSA v1 provenance in an in-toto Statement v1, valid against the
published schemas. SLSA publishes its v1 schema as protobuf and CUE, no JSON Schema; the protobuf files are vendored
byte for byte (docs/schemas/), and the statement is parsed strictly (no unknown field, every type right) by the
in-toto project's Python bindings, which these tests first hold to the vendored files, field by field."""
from __future__ import annotations

import hashlib
import json
import re

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import resource_descriptor_pb2, statement_pb2
from in_toto_attestation.v1.statement import Statement

from tests.helpers.cli import ROOT
from tests.helpers.variants import make_plans, make_variant
from torchdev import provenance
from torchdev.matrix import Flavour, ImageSettings

SCHEMAS = ROOT / "docs" / "schemas"
END_OF_HEADER = "// ---- end of header ----\n"
SETTINGS = ImageSettings(repository="torchdev", pip_index="default", packages=("numpy==1.26.4",),
                         tag_templates=("{torch}-{variant}-py{python}", "{variant}"),
                         apt_snapshot_urls=(("ubuntu", "http://snapshot.ubuntu.com/ubuntu/20261101T000000Z"),))
FACTS = provenance.BuildFacts(
    configuration=(provenance.FileDigest("images.yaml", "1" * 64), provenance.FileDigest("overlays/x.yaml", "2" * 64)),
    locks=(provenance.FileDigest("locks/cu118.txt", "3" * 64),), context_sha256="4" * 64, dirty=False,
    subject_name="registry.example.com/ml/torchdev", subject_digest="sha256:" + "5" * 64)
BUILDER = provenance.Builder(torchdev_revision="6" * 40,
                             versions={"buildx": "0.13.1", "buildkit": "v0.13.2", "docker-engine": "26.1.5"})


def vendored(name: str) -> tuple[str, str, str]:
    """(sha256 the header records, sha256 of what follows it, that text)."""
    text = (SCHEMAS / name).read_text()
    header, _, body = text.partition(END_OF_HEADER)
    return re.search(r"sha256 ([0-9a-f]{64})", header).group(1), hashlib.sha256(body.encode()).hexdigest(), body


def proto_fields(body: str) -> dict[str, set[str]]:
    """message -> the JSON names of its fields (lowerCamelCase, or json_name), read from a .proto file."""
    messages = {}
    for name, block in re.findall(r"^message (\w+) \{(.*?)^\}", body, re.M | re.S):
        fields = set()
        for field, options in re.findall(r"^\s+(?:repeated\s+)?[\w.<>, ]+?\s(\w+)\s*=\s*\d+\s*(\[[^\]]*\])?;",
                                         block, re.M):
            json_name = re.search(r'json_name\s*=\s*"([^"]+)"', options or "")
            fields.add(json_name.group(1) if json_name else re.sub(r"_(\w)", lambda m: m.group(1).upper(), field))
        messages[name] = fields
    return messages


def binding_fields(message) -> set[str]:
    return {field.json_name for field in message.DESCRIPTOR.fields}


@pytest.mark.parametrize("name", ["slsa-provenance-v1.proto", "in-toto-statement-v1.proto",
                                  "in-toto-resource_descriptor-v1.proto"])
def test_the_vendored_schemas_are_the_upstream_files_byte_for_byte(name):
    recorded, actual, _ = vendored(name)
    assert actual == recorded, f"docs/schemas/{name} was edited below its header"


def test_the_bindings_declare_the_published_slsa_v1_messages_and_fields():
    published = proto_fields(vendored("slsa-provenance-v1.proto")[2])
    bindings = {"Provenance": provenance_pb2.Provenance, "BuildDefinition": provenance_pb2.BuildDefinition,
                "RunDetails": provenance_pb2.RunDetails, "Builder": provenance_pb2.Builder,
                "BuildMetadata": provenance_pb2.BuildMetadata,
                "ResourceDescriptor": resource_descriptor_pb2.ResourceDescriptor}
    assert set(published) == set(bindings)
    for name, message in bindings.items():
        assert binding_fields(message) == published[name], name


def test_the_bindings_declare_the_published_statement():
    published = proto_fields(vendored("in-toto-statement-v1.proto")[2])
    assert binding_fields(statement_pb2.Statement) == published["Statement"] == {
        "_type", "subject", "predicateType", "predicate"}
    descriptor = proto_fields(vendored("in-toto-resource_descriptor-v1.proto")[2])
    assert binding_fields(resource_descriptor_pb2.ResourceDescriptor) == descriptor["ResourceDescriptor"]


def plan(**fields):
    variant = make_variant("cu118", apt_snapshot="20261101T000000Z", **fields)
    built = make_plans(variant, settings=SETTINGS, flavours=(Flavour("runtime"),))[0]
    return built


def validate(document: dict) -> None:
    """What a consumer of SLSA v1 provenance may rely on: the statement and the predicate parse strictly (an unknown
    field or a wrong type raises), in-toto's own checks pass, and the fields SLSA v1 calls REQUIRED are there."""
    message = json_format.ParseDict(document, statement_pb2.Statement())
    Statement.copy_from_pb(message).validate()
    predicate = json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    assert predicate.build_definition.build_type and predicate.build_definition.HasField("external_parameters")
    assert predicate.run_details.builder.id
    for dependency in document["predicate"]["buildDefinition"]["resolvedDependencies"]:
        assert dependency.get("name") or dependency.get("uri") or dependency.get("digest")


def test_the_statement_is_valid_slsa_v1_provenance():
    validate(provenance.statement(plan(), FACTS, BUILDER))


def test_a_statement_with_a_misspelt_field_is_refused_by_the_same_check():
    document = provenance.statement(plan(), FACTS, BUILDER)
    document["predicate"]["buildDefinition"]["resolvedDependency"] = []
    with pytest.raises(json_format.ParseError):
        validate(document)
    bad = provenance.statement(plan(), FACTS, BUILDER)
    bad["predicate"]["runDetails"]["builder"]["version"] = {"buildx": 13}
    with pytest.raises(json_format.ParseError):
        validate(bad)


def test_it_records_the_parameters_the_dependencies_and_the_builder():
    document = provenance.statement(plan(), FACTS, BUILDER)
    predicate = document["predicate"]
    external = predicate["buildDefinition"]["externalParameters"]
    assert external == {"variant": "cu118", "flavour": "runtime", "platforms": ["linux/amd64"], "target": "runtime",
                        "configuration": [{"path": "images.yaml", "sha256": "1" * 64},
                                          {"path": "overlays/x.yaml", "sha256": "2" * 64}]}
    assert predicate["buildDefinition"]["internalParameters"]["buildArgs"]["SOURCE_DATE_EPOCH"]
    dependencies = {d["name"]: d for d in predicate["buildDefinition"]["resolvedDependencies"]}
    assert dependencies["source"]["digest"] == {"gitCommit": "abc1234" + "0" * 33}
    assert dependencies["lock locks/cu118.txt"]["digest"] == {"sha256": "3" * 64}
    assert dependencies["docker/"]["digest"] == {"sha256": "4" * 64}
    assert dependencies["apt archive ubuntu"] == {"name": "apt archive ubuntu", "uri": (
        "http://snapshot.ubuntu.com/ubuntu/20261101T000000Z"), "annotations": {"snapshot": "20261101T000000Z"}}
    assert dependencies["base image"]["annotations"] == {"pinned": False}
    builder = predicate["runDetails"]["builder"]
    assert builder["version"] == {"torchdev": "6" * 40, "buildx": "0.13.1", "buildkit": "v0.13.2",
                                  "docker-engine": "26.1.5"}
    assert document["subject"] == [{"name": "registry.example.com/ml/torchdev", "digest": {"sha256": "5" * 64}}]


def test_a_pinned_base_is_a_dependency_by_digest_and_the_same_inputs_give_the_same_statement():
    pinned = plan(base="nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04@sha256:" + "7" * 64)
    first = provenance.statement(pinned, FACTS, BUILDER)
    base = next(d for d in first["predicate"]["buildDefinition"]["resolvedDependencies"] if d["name"] == "base image")
    assert base == {"name": "base image", "uri": "docker-image://nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
                    "digest": {"sha256": "7" * 64}}
    assert json.dumps(first) == json.dumps(provenance.statement(pinned, FACTS, BUILDER))
    validate(first)


def test_verify_reads_back_the_commit_the_locks_and_the_base():
    dirty = provenance.BuildFacts(**{**FACTS.__dict__, "dirty": True})
    origin = provenance.origin(provenance.statement(plan(), dirty, BUILDER)["predicate"])
    assert origin == provenance.Origin(commit="abc1234" + "0" * 33, dirty=True,
                                       locks=(provenance.FileDigest("locks/cu118.txt", "3" * 64),),
                                       base="nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04")
