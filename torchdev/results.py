"""What each command returns: a frozen record of what it did or found (values, and the lines a feature has already
phrased: a lock's drift, a note), which torchdev.presenter alone turns into what a user sees and an exit status."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchdev.bases import PinResult
from torchdev.build import BuildResult
from torchdev.capture import Addition, Target
from torchdev.doctor import CheckResult
from torchdev.images import BuiltImage
from torchdev.matrix import Matrix
from torchdev.plan import BuildPlan
from torchdev.platforms import Platform
from torchdev.push import PushResult
from torchdev.repro import UncachedBuild
from torchdev.smoke import SuiteRun


@dataclass(frozen=True)
class MatrixView:
    """`./dev matrix`: the plan of every variant in every flavour, and which (variant, platform) has a lock file."""

    matrix: Matrix
    plans: tuple[BuildPlan, ...]
    locked: frozenset[tuple[str, Platform]]
    width: int | None = None
    """The columns the table may take (a terminal's): the essential columns, wrapped to fit; None: every column,
    one line per image (`--wide`, or output that is not a terminal)."""


@dataclass(frozen=True)
class DryRun:
    """`./dev build --dry-run`: the plans a build would follow."""

    plans: tuple[BuildPlan, ...]


@dataclass(frozen=True)
class BuildReport:
    """Builds that ran, one result per image, in order (`build`; `smoke --build` and `up` show one on the way)."""

    results: tuple[BuildResult, ...]


@dataclass(frozen=True)
class LockReport:
    """`./dev lock`: a line per lock that failed or drifted (its progress was said as it went)."""

    problems: tuple[str, ...]


@dataclass(frozen=True)
class DoctorReport:
    """`./dev doctor`: one result per check of this host."""

    checks: tuple[CheckResult, ...]
    width: int | None = None
    """The columns the table may take: each detail wrapped to fit; None: one line per check."""


@dataclass(frozen=True)
class ImageList:
    """`./dev images`: the repository's built images."""

    repository: str
    images: tuple[BuiltImage, ...]


@dataclass(frozen=True)
class ImageManifest:
    """`./dev images --manifest VARIANT`: the manifest the image carries."""

    reference: str
    manifest: dict


@dataclass(frozen=True)
class Attestation:
    """`./dev images --sbom VARIANT` or `--provenance VARIANT`: the document (`kind` "sbom" or "provenance") of the
    image at `repository@digest`, as pushed (reports/push records this build) or as built; written to `path` with
    --out, else shown."""

    kind: str
    text: str
    repository: str
    digest: str
    pushed: bool
    path: Path | None = None


@dataclass(frozen=True)
class SmokeReport:
    """`./dev smoke`: each run, where the reports went, and notes on what was not tested."""

    runs: tuple[SuiteRun, ...]
    reports_dir: Path
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReproReport:
    """`./dev verify-repro`: two builds of one image without layer cache, from the same inputs. When both ran the same
    RUN steps (`compared`) and gave two image IDs, what differs between them; when they gave one, the line saying it
    is not the digest images.yaml records ("" when it is, or none is recorded) and the image the immutable tag names
    (None when none does)."""

    image: str
    variant: str
    builds: tuple[UncachedBuild, UncachedBuild]
    differences: str = ""
    mismatch: str = ""
    immutable_tag: str = ""
    tagged: str | None = None

    @property
    def compared(self) -> bool:
        """Whether the second build ran every RUN step the first ran: BuildKit shares a step with a concurrent build
        of the same step even under --no-cache, and a build that took its results from another proves nothing."""
        first, second = self.builds
        return bool(first.steps) and second.steps == first.steps

    @property
    def reproducible(self) -> bool:
        return self.compared and self.builds[0].image_id == self.builds[1].image_id


@dataclass(frozen=True)
class PinReport:
    results: tuple[PinResult, ...]


@dataclass(frozen=True)
class SavedArchives:
    """`./dev save-bases --to-archive`: the archives written."""

    paths: tuple[Path, ...]


@dataclass(frozen=True)
class MirroredBases:
    """`./dev save-bases --to-registry`: (variant, base, its copy by digest) per variant."""

    copies: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class PushReport:
    """`./dev push`: one result per image; with --sign, a line per pushed image that was not signed, and why."""

    results: tuple[PushResult, ...]
    unsigned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verification:
    """`./dev verify`: the signature and both attestations verified; the lines torchdev.signing phrased from them
    (who signed, when, the commit, the lock, the SBOM). A failed check is a VerifyFailure instead."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class JobDockerfile:
    """`./dev k8s` without --image: the job image's Dockerfile, FROM the pushed image `base`."""

    path: Path
    base: str
    variant: str
    policy: Path | None = None
    """With --policy-key: the ClusterImagePolicy written beside it."""


@dataclass(frozen=True)
class JobManifests:
    """`./dev k8s --image`: the manifests written into `folder`."""

    folder: Path
    files: tuple[str, ...]
    policy: Path | None = None
    """With --policy-key: the ClusterImagePolicy written beside them."""


@dataclass(frozen=True)
class BaseExists:
    """`./dev base`: the image already holds every platform asked for."""

    name: str
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class Exited:
    """A program that ran attached to the terminal and said what it had to (compose, make-base.sh): its status."""

    status: int


@dataclass(frozen=True)
class CaptureReport:
    """`./dev capture`: the container read and what its users added beyond its image; with --write, the variant's
    added packages now (`declared`), the file that declares them, the locks written, the additions left out (with
    why), and the builds that ran."""

    target: Target
    additions: tuple[Addition, ...]
    declared: tuple[str, ...] | None = None
    file: Path | None = None
    locks: tuple[Path, ...] = ()
    left_out: tuple[tuple[str, str], ...] = ()
    builds: tuple[BuildResult, ...] = ()
