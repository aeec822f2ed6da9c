"""Admission policies for sigstore's policy-controller: a cluster that admits only pods whose images were signed
with the team's key, and, for torchdev's own images, carry the SBOM and the provenance signed by it too.

Two ClusterImagePolicy documents (policy.sigstore.dev/v1beta1), one per kind of image:
- the torchdev images (the pushed repository, any tag or digest): a signature by the key and two attestations by
  it, the SPDX SBOM (`spdxjson`) and the SLSA v1 provenance (`slsaprovenance1`), as `./dev push --sign` attaches;
- the job image (`./dev k8s --image`), built FROM a torchdev image with train/ added by `docker build`: a signature
  by the key (`cosign sign --key ...` once it is pushed; docs/publishing.md). Its SBOM and provenance would be the
  base's plus train/, which torchdev does not build, so none is required of it.

Key-based, with no transparency log: an authority without `ctlog` makes policy-controller skip the log, matching
`--tlog-upload=false`. With `tlog_url`, the authority names the Rekor instance the signatures were uploaded to.
policy-controller admits only namespaces labelled `policy.sigstore.dev/include=true`.

Pure: names, repositories and the public key's PEM in, dicts out.
"""
from __future__ import annotations

from torchdev.trust import PROVENANCE_TYPE, SBOM_TYPE

API_VERSION = "policy.sigstore.dev/v1beta1"
ATTESTATIONS = ({"name": "sbom", "predicateType": SBOM_TYPE}, {"name": "provenance", "predicateType": PROVENANCE_TYPE})


def canonical_repository(repository: str) -> str:
    """The repository as policy-controller matches it (go-containerregistry's full name): Docker Hub's get
    index.docker.io/ and, for official images, library/."""
    first = repository.split("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return repository
    return "index.docker.io/" + (repository if "/" in repository else f"library/{repository}")


def image_globs(repository: str) -> list[dict[str, str]]:
    """Any tag and any digest of exactly this repository: `*` stops at `/`, so neither matches a repository below
    it or one whose name merely starts the same."""
    name = canonical_repository(repository)
    return [{"glob": f"{name}:*"}, {"glob": f"{name}@*"}]


def _authority(name: str, public_key: str, *, attestations: bool, tlog_url: str | None) -> dict:
    authority = {"name": name, "key": {"data": public_key, "hashAlgorithm": "sha256"}}
    if tlog_url:
        authority["ctlog"] = {"url": tlog_url}
    if attestations:
        authority["attestations"] = [dict(attestation) for attestation in ATTESTATIONS]
    return authority


def policy(*, name: str, repository: str, public_key: str, attestations: bool, tlog_url: str | None = None) -> dict:
    return {"apiVersion": API_VERSION, "kind": "ClusterImagePolicy", "metadata": {"name": name},
            "spec": {"images": image_globs(repository),
                     "authorities": [_authority("signed-by-key", public_key, attestations=attestations,
                                                tlog_url=tlog_url)]}}


def policies(*, name: str, torchdev_repository: str, public_key: str, job_repository: str | None = None,
             tlog_url: str | None = None) -> list[dict]:
    """The torchdev images' policy, and the job image's when there is one."""
    found = [policy(name=f"{name}-torchdev-images", repository=torchdev_repository, public_key=public_key,
                    attestations=True, tlog_url=tlog_url)]
    if job_repository:
        found.append(policy(name=f"{name}-job-image", repository=job_repository, public_key=public_key,
                            attestations=False, tlog_url=tlog_url))
    return found
