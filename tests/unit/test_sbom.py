"""The SBOM (torchdev/sbom.py): SPDX 2.3 JSON that the SPDX project's own parser reads back and its validator
accepts, listing exactly the manifest's packages with the purls scanners match advisories by, the same bytes for the
same inputs."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from spdx_tools.spdx.parser.json.json_parser import parse_from_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from tests.helpers.signing import sample_manifest
from torchdev import sbom

FACTS = sbom.ImageFacts(repository="registry.example.com:5000/ml/torchdev", digest="sha256:" + "a" * 64,
                        tags=("cu118", "2.0.1-cu118-py3.10"), created=datetime(2026, 11, 28, tzinfo=timezone.utc),
                        revision="1" * 40, source="https://git.example.com/torchdev.git", os_id="ubuntu",
                        os_version="22.04", platforms=("linux/amd64",))


@pytest.fixture()
def document(tmp_path):
    text = sbom.render(sample_manifest(debian=5), FACTS)
    path = tmp_path / "sbom.spdx.json"
    path.write_text(text)
    return text, json.loads(text), path


def test_the_spdx_tools_parser_reads_it_back_and_its_validator_finds_nothing(document):
    _, _, path = document
    parsed = parse_from_file(str(path))
    assert validate_full_spdx_document(parsed, spdx_version="SPDX-2.3") == []
    assert parsed.creation_info.spdx_version == "SPDX-2.3"


def test_a_document_that_breaks_the_spdx_rules_is_refused_not_written():
    broken = replace(FACTS, digest="sha256:#fragment")  # a namespace must be a URI without a fragment
    with pytest.raises(ValueError, match="Document is not valid"):
        sbom.render(sample_manifest(), broken)


def test_it_lists_exactly_the_manifests_packages(document):
    manifest = sample_manifest(debian=5)
    assert sbom.listed_packages(document[1]) == sbom.manifest_packages(manifest)
    assert len(sbom.manifest_packages(manifest)) == 8


def test_the_same_inputs_give_the_same_bytes_and_no_clock_or_random_id_is_in_them(document):
    text, content, _ = document
    assert sbom.render(sample_manifest(debian=5), FACTS) == text
    assert content["creationInfo"]["created"] == "2026-11-28T00:00:00Z"
    other = sbom.render(sample_manifest(debian=5), replace(FACTS, digest="sha256:" + "9" * 64))
    assert json.loads(other)["documentNamespace"] != content["documentNamespace"]


def test_the_purls_say_what_scanners_match_advisories_by(document):
    purls = {ref["referenceLocator"] for package in document[1]["packages"] for ref in package.get("externalRefs", [])}
    assert "pkg:deb/ubuntu/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=ubuntu-22.04" in purls
    assert "pkg:pypi/pyyaml@6.0.2" in purls and "pkg:pypi/nvidia-cudnn-cu11@8.5.0.96" in purls
    assert f"pkg:oci/torchdev@sha256:{'a' * 64}?arch=amd64&repository_url={FACTS.repository}&tag=cu118" in purls
    assert f"pkg:oci/ubuntu@sha256:{'b' * 64}?repository_url=ubuntu&tag=22.04" in purls


def test_the_image_is_the_described_package_descending_from_its_base_and_holding_the_os(document):
    content = document[1]
    by_id = {package["SPDXID"]: package for package in content["packages"]}
    relations = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in content["relationships"]}
    described = [r for r in relations if r[0] == "SPDXRef-DOCUMENT" and r[1] == "DESCRIBES"]
    assert len(described) == 1
    image = by_id[described[0][2]]
    assert (image["name"], image["versionInfo"], image["primaryPackagePurpose"]) == (
        FACTS.repository, FACTS.digest, "CONTAINER")
    base = next(p for p in content["packages"] if p["name"].startswith("ubuntu:22.04"))
    assert (image["SPDXID"], "DESCENDANT_OF", base["SPDXID"]) in relations
    os_package = by_id["SPDXRef-OperatingSystem-ubuntu"]
    # spdx-tools writes the JSON schema's OPERATING_SYSTEM (the spec's text says OPERATING-SYSTEM; the schema now
    # takes both: spdx/tools-python#827); Trivy finds the OS by the SPDXRef-OperatingSystem ID either way.
    assert (os_package["versionInfo"], os_package["primaryPackagePurpose"]) == ("22.04", "OPERATING_SYSTEM")
    debs = [p for p in content["packages"] if any("pkg:deb/" in r["referenceLocator"] for r in p.get("externalRefs", []))]
    assert all((os_package["SPDXID"], "CONTAINS", p["SPDXID"]) in relations for p in debs) and len(debs) == 5


def test_every_python_distribution_records_the_lock_and_its_installed_files(document):
    pythons = [p for p in document[1]["packages"]
               if any("pkg:pypi/" in r["referenceLocator"] for r in p.get("externalRefs", []))]
    assert all(p["sourceInfo"] == f"installed by pip --require-hashes from the lock with sha256 {'c' * 64}"
               for p in pythons)
    assert {p["comment"] for p in pythons} >= {f"RECORD sha256 {'d' * 64} (its installed-file list)"}
    unlocked = {**sample_manifest(), "lock_sha256": None}
    assert "no lock" in sbom.python_source_info(unlocked)


def test_element_ids_stay_distinct_where_names_differ_only_in_characters_ids_cannot_hold(document):
    ids = [package["SPDXID"] for package in document[1]["packages"]]
    assert len(ids) == len(set(ids))
    assert sum(1 for i in ids if i.startswith("SPDXRef-deb-g---")) == 2  # g++ and g--


def test_an_unpinned_base_says_so_and_carries_no_version():
    manifest = {**sample_manifest(), "base": {"image": "torchdev-base:bookworm", "digest": None}}
    content = json.loads(sbom.render(manifest, FACTS))
    base = next(p for p in content["packages"] if p["name"] == "torchdev-base:bookworm")
    assert "versionInfo" not in base and "not pinned" in base["comment"]


@pytest.mark.parametrize("text, expected", [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n', ("debian", "12")),
    ("ID=ubuntu\nVERSION_ID=\"22.04\"\n", ("ubuntu", "22.04")),
    ("", ("", "")),
])
def test_os_release_gives_the_distro_qualifier(text, expected):
    assert sbom.parse_os_release(text) == expected
