"""torchdev/admission.py: the sigstore policy-controller ClusterImagePolicies that admit only signed torchdev images,
checked against the vendored CRD's schema (`./dev k8s --policy-key` writes them: test_k8s.py)."""
import pytest

from tests.helpers.k8s import policy_glob_match, served_validator, vendored_policy_crd
from torchdev import admission

IMAGE = "registry.example.com/ml/torchdev-job@sha256:" + "0" * 64
PEM = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPGgLefyOkicW+x5gKcYXF1e2lrmZ\n"
       "IFqm8hKZ8V86MaGEhyPYC2dtRM0Vke5vIxS7YTzkWGcOT664ssQWfLXlfA==\n-----END PUBLIC KEY-----\n")
TORCHDEV = "registry.example.com/ml/torchdev"


def test_the_vendored_policy_crd_is_the_upstream_file_byte_for_byte():
    recorded, actual, crd = vendored_policy_crd()
    assert actual == recorded, "deploy/k8s/schemas/policy.sigstore.dev_clusterimagepolicies.yaml was edited below its header"
    assert crd["metadata"]["name"] == "clusterimagepolicies.policy.sigstore.dev"


@pytest.mark.parametrize("job_repository", [None, "registry.example.com/ml/torchdev-job"])
def test_the_policies_are_valid_cluster_image_policies(job_repository):
    validator = served_validator(vendored_policy_crd()[2], "v1beta1")
    documents = admission.policies(name="torchdev-cu118", torchdev_repository=TORCHDEV, public_key=PEM,
                                   job_repository=job_repository)
    assert len(documents) == (2 if job_repository else 1)
    for document in documents:
        assert document["apiVersion"] == "policy.sigstore.dev/v1beta1" and document["kind"] == "ClusterImagePolicy"
        errors = [error.message for error in validator.iter_errors(document)]
        assert errors == [], errors


def test_a_broken_policy_is_refused_by_the_crd_schema():
    validator = served_validator(vendored_policy_crd()[2], "v1beta1")
    document = admission.policies(name="x", torchdev_repository=TORCHDEV, public_key=PEM)[0]
    document["spec"]["authorities"][0]["keys"] = document["spec"]["authorities"][0].pop("key")
    assert list(validator.iter_errors(document))


def test_the_torchdev_images_need_the_signature_and_both_attestations_the_job_image_the_signature():
    torchdev_images, job_image = admission.policies(name="j", torchdev_repository=TORCHDEV, public_key=PEM,
                                                    job_repository=IMAGE.split("@")[0])
    authority = torchdev_images["spec"]["authorities"][0]
    assert authority["key"] == {"data": PEM, "hashAlgorithm": "sha256"} and "ctlog" not in authority
    assert {(a["name"], a["predicateType"]) for a in authority["attestations"]} == {
        ("sbom", "spdxjson"), ("provenance", "slsaprovenance1")}
    assert "attestations" not in job_image["spec"]["authorities"][0]
    with_log = admission.policies(name="j", torchdev_repository=TORCHDEV, public_key=PEM,
                                  tlog_url="https://rekor.sigstore.dev")[0]
    assert with_log["spec"]["authorities"][0]["ctlog"] == {"url": "https://rekor.sigstore.dev"}


@pytest.mark.parametrize("image, matched", [
    (f"{TORCHDEV}@sha256:{'1' * 64}", True), (f"{TORCHDEV}:2.0.1-cu118-py3.10", True),
    (f"{TORCHDEV}:cu118@sha256:{'1' * 64}", True), (f"{TORCHDEV}-job@sha256:{'1' * 64}", False),
    (f"{TORCHDEV}/other:1", False), ("registry.example.com/ml/other:1", False),
])
def test_the_globs_match_exactly_the_repositorys_tags_and_digests(image, matched):
    globs = [entry["glob"] for entry in admission.image_globs(TORCHDEV)]
    assert any(policy_glob_match(glob, image) for glob in globs) is matched


def test_docker_hub_repositories_are_matched_by_their_full_name():
    assert admission.canonical_repository("team/job") == "index.docker.io/team/job"
    assert admission.canonical_repository("ubuntu") == "index.docker.io/library/ubuntu"
    assert admission.canonical_repository("localhost:5000/job") == "localhost:5000/job"
