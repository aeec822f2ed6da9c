"""`./dev capture` against the fake engine: which container it reads, what it lists, how it declares the additions in
the overlay (in place), refuses what conflicts with the lock in one line naming both, locks them apart and builds.
uv is not run: its answer is made up here (tests/integration/test_capture.py runs it, and the real engine)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from torchdev import capture, commands, lock as locks
from torchdev.engine import RunResult, RunStatus
from torchdev.errors import TorchdevError, UsageError
from torchdev.matrix import load_matrix
from torchdev.presenter import present
from torchdev.runner import execute

WORKSPACE = Path("/home/me/torchdev")
LABELS = {"io.torchdev.variant": "cu117", "io.torchdev.flavour": "devel"}
EINOPS = {"name": "einops", "version": "0.8.1", "site": "/home/torchdev/.local/lib/python3.11/site-packages", "url": ""}


def listing(*items: dict) -> RunResult:
    return RunResult(RunStatus.EXITED, 0, json.dumps(list(items)) + "\n")


@pytest.fixture()
def checkout(tmp_path):
    """images.yaml, the CI overlay and its cu117 lock, copied: capture --write writes into the overlay."""
    root = tmp_path / "checkout"
    (root / "overlays" / "local-debian").mkdir(parents=True)
    shutil.copy(ROOT / "images.yaml", root / "images.yaml")
    shutil.copy(ROOT / "overlays" / "local-debian.yaml", root / "overlays" / "local-debian.yaml")
    shutil.copy(ROOT / "overlays" / "local-debian" / "cu117.lock.txt", root / "overlays" / "local-debian")
    return root


def engine_with(*items: dict, running: bool = True, labels: dict | None = None,
                root: Path = WORKSPACE) -> FakeEngine:
    """A dev container of the checkout at `root`, on a torchdev cu117 devel image (as the CLI derives it), whose
    users' site-packages list `items`."""
    engine = FakeEngine()
    image = engine.add_image("vsc-torchdev-0123-uid", labels=LABELS if labels is None else labels)
    engine.add_container("happy_dev", image, running=running, labels={capture.DEV_CONTAINER_LABEL: str(root)})
    engine.runs[image] = listing(*items)
    return engine


def uv_answers(monkeypatch, *packages: tuple[str, str]) -> list[str]:
    """uv's resolution: the main lock's packages as they are, and `packages`; the constraints it was given."""
    given: list[str] = []

    def resolve(spec, *, constraints="", error=None, **_logins):
        given.append(constraints)
        pins = [line.split("==") for line in constraints.splitlines()]
        return {"packages": [{"name": name, "version": version,
                              "wheels": [{"name": f"{name}-{version}-py3-none-any.whl",
                                          "hashes": {"sha256": "e" * 64}}]}
                             for name, version in [*pins, *packages]]}
    monkeypatch.setattr(locks, "resolve", resolve)
    return given


def ctx_for(engine, root: Path, tmp_path: Path):
    return make_context(engine=engine, root=root, matrix_file=root / "images.yaml", reports=tmp_path / "reports")


# --- which container -----------------------------------------------------------------------------------------------

def test_without_a_name_the_checkouts_only_dev_or_compose_container_is_read():
    engine = engine_with(EINOPS)
    assert capture.find_container(engine, None, root=WORKSPACE).name == "happy_dev"
    with pytest.raises(UsageError, match=r"no dev container or compose container of /elsewhere: open the dev"):
        capture.find_container(engine, None, root=Path("/elsewhere"))
    engine.add_container("torchdev-dev-run-1", engine.names["vsc-torchdev-0123-uid"],
                         labels={capture.COMPOSE_LABEL: str(WORKSPACE)})
    with pytest.raises(UsageError, match=r"2 containers of /home/me/torchdev: happy_dev, torchdev-dev-run-1: name one"):
        capture.find_container(engine, None, root=WORKSPACE)
    assert capture.find_container(engine, "torchdev-dev-run-1", root=WORKSPACE).name == "torchdev-dev-run-1"
    with pytest.raises(UsageError, match="no container named nope"):
        capture.find_container(engine, "nope", root=WORKSPACE)


def test_a_container_of_another_image_is_refused_in_one_line():
    engine = engine_with(EINOPS, labels={})
    with pytest.raises(UsageError, match=r"container happy_dev runs sha256:\S+, which is not a torchdev image"):
        capture.find_container(engine, None, root=WORKSPACE)


# --- what it lists -------------------------------------------------------------------------------------------------

def test_the_listing_runs_in_the_containers_image_with_its_volumes_read_only_and_no_network_or_privilege():
    engine = engine_with(EINOPS, running=False)
    found = capture.find_container(engine, None, root=WORKSPACE)
    assert capture.read_additions(engine, found) == [capture.Addition("einops", "0.8.1", EINOPS["site"])]
    [spec] = engine.ran
    assert spec.image == found.image_id and spec.volumes_from == (f"{found.id}:ro",) and spec.network_disabled
    assert spec.cap_drop == ("ALL",) and spec.cap_add == () and spec.security_options == ("no-new-privileges:true",)
    assert spec.command[:3] == ("python", "-I", "-c") and spec.entrypoint == ()


def test_the_listing_script_reads_user_site_packages_under_home_only(tmp_path, monkeypatch):
    """The script the helper container runs, run here over a made-up /home (its glob patterns are absolute, so they
    are pointed at the folder)."""
    site = tmp_path / "home" / "torchdev" / ".local" / "lib" / "python3.99" / "site-packages"
    (site / "einops-0.8.1.dist-info").mkdir(parents=True)
    (site / "einops-0.8.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: einops\nVersion: 0.8.1\n")
    script = capture.LIST_SCRIPT.replace("/home/", f"{tmp_path}/home/").replace(
        '"%d.%d" % sys.version_info[:2]', '"3.99"')
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(script, {})  # noqa: S102 - the script torchdev runs in images, on a folder of the test's
    assert json.loads(printed.getvalue()) == [{"name": "einops", "version": "0.8.1", "site": str(site), "url": ""}]


def test_an_unreadable_listing_is_one_line_naming_the_container():
    engine = engine_with()
    image = engine.names["vsc-torchdev-0123-uid"]
    engine.runs[image] = RunResult(RunStatus.EXITED, 127, "sh: python: not found\n")
    found = capture.find_container(engine, None, root=WORKSPACE)
    with pytest.raises(TorchdevError, match="cannot read what container happy_dev added: sh: python: not found"):
        capture.read_additions(engine, found)


def test_listing_only_says_what_was_added_and_how_to_take_it_into_the_image(tmp_path, checkout):
    engine = engine_with(EINOPS, {**EINOPS, "name": "mypkg", "version": "0.1", "url": "file:///workspace/mypkg"})
    report = commands.capture(ctx_for(engine, WORKSPACE, tmp_path))
    shown = "\n".join(present(report).out)
    assert "happy_dev (running; cu117, devel image" in shown and "einops" in shown
    assert "from file:///workspace/mypkg" in shown
    assert "./dev capture --container happy_dev --write" in shown
    assert report.declared is None and engine.requests == []


# --- declaring, locking, building ----------------------------------------------------------------------------------

def test_write_declares_in_the_overlay_locks_apart_and_builds_runtime_then_the_containers_flavour(
        tmp_path, checkout, buildx, monkeypatch):
    engine = engine_with(EINOPS, {**EINOPS, "name": "numpy", "version": "1.26.4"}, root=checkout)
    engine.add_container("other", engine.names["vsc-torchdev-0123-uid"])  # not this checkout's: not a candidate
    given = uv_answers(monkeypatch, ("einops", "0.8.1"))
    overlay = checkout / "overlays" / "local-debian.yaml"
    before = overlay.read_text()
    ctx = ctx_for(engine, checkout, tmp_path)
    status = execute(ctx, commands.capture, write=True, overlay=str(overlay))
    out, err = output(ctx)
    assert status == 0, out + err
    after = overlay.read_text()
    assert after.replace("    added_packages:  # ./dev capture: installed in a container, locked apart\n"
                         "      - einops==0.8.1\n", "") == before, "one block added, the rest as it was"
    matrix = load_matrix(checkout / "images.yaml", overlay=str(overlay))
    variant = matrix.variant("cu117")
    assert variant.added_packages == ("einops==0.8.1",)
    added = matrix.added_lock_file(variant)
    assert added == checkout / "overlays" / "local-debian" / "cu117.lock.added.txt"
    text = added.read_text()
    assert text.startswith("# torchdev added lock: variant=cu117") and "\neinops==0.8.1 \\\n" in text
    assert "numpy==" not in text.split("\n", 4)[-1], "what the main lock holds stays there"
    assert "numpy==1.26.4\n" in given[0] and "torch==2.0.1\n" in given[0], "held to the main lock's pins"
    assert [request.target for request in engine.requests] == ["runtime", "devel"]
    assert all(request.contexts.keys() == {"lock", "added"} for request in engine.requests)
    assert all(request.build_args["ADDED_PACKAGES"] == "einops==0.8.1" for request in engine.requests)
    assert "left out: numpy==1.26.4: the image has it already" in out
    assert f"declared in {overlay}: variants.cu117.added_packages: einops==0.8.1" in out
    assert locks.unfit_lock(matrix=matrix, variant=variant) == ""


def test_a_package_that_conflicts_with_the_lock_is_refused_in_one_line_naming_both_and_nothing_is_written(
        tmp_path, checkout, buildx, monkeypatch):
    engine = engine_with(EINOPS, {**EINOPS, "name": "numpy", "version": "2.0.0"})
    uv_answers(monkeypatch)
    overlay = checkout / "overlays" / "local-debian.yaml"
    before = overlay.read_text()
    ctx = make_context(engine=engine, root=WORKSPACE, matrix_file=checkout / "images.yaml",
                       reports=tmp_path / "reports")
    status = execute(ctx, commands.capture, write=True, overlay=str(overlay))
    out, err = output(ctx)
    assert status == 2 and err.splitlines() == [
        "torchdev: variant 'cu117': numpy==2.0.0 conflicts with the lock's numpy==1.26.4 "
        "(overlays/local-debian/cu117.lock.txt): the image's own numpy stays; leave numpy out, or change the "
        "matrix's packages and lock the variant again"]
    assert overlay.read_text() == before and not (checkout / "overlays" / "local-debian" / "cu117.lock.added.txt").exists()
    assert engine.requests == []


def test_a_package_whose_requirements_do_not_fit_the_lock_is_uvs_one_line_and_nothing_is_written(
        tmp_path, checkout, buildx, monkeypatch):
    engine = engine_with({**EINOPS, "name": "needs-numpy2", "version": "1.0"})

    def resolve(spec, *, constraints="", error=None, **_logins):
        raise locks.UNRESOLVED(line=error("  × No solution found when resolving dependencies:\n  ╰─▶ Because "
                                          "needs-numpy2==1.0 depends on numpy>=2 and you require numpy==1.26.4, we "
                                          "can conclude that your requirements are unsatisfiable.\n"))
    monkeypatch.setattr(locks, "resolve", resolve)
    overlay = checkout / "overlays" / "local-debian.yaml"
    before = overlay.read_text()
    ctx = make_context(engine=engine, root=WORKSPACE, matrix_file=checkout / "images.yaml",
                       reports=tmp_path / "reports")
    assert execute(ctx, commands.capture, write=True, overlay=str(overlay)) == 1
    [line] = output(ctx)[1].splitlines()
    assert line.startswith("torchdev: variant 'cu117': the added packages needs-numpy2==1.0 do not fit the lock: "
                           "Because needs-numpy2==1.0 depends on numpy>=2 and you require numpy==1.26.4")
    assert overlay.read_text() == before and engine.requests == []


def test_nothing_added_is_nothing_to_declare(tmp_path, checkout):
    engine = engine_with()
    ctx = make_context(engine=engine, root=WORKSPACE, matrix_file=checkout / "images.yaml",
                       reports=tmp_path / "reports")
    assert execute(ctx, commands.capture, write=True, overlay=str(checkout / "overlays" / "local-debian.yaml")) == 2
    assert "container happy_dev added nothing that can be declared: its users' site-packages are empty" in output(ctx)[1]


# --- the YAML, edited in place -------------------------------------------------------------------------------------

BLOCK = "added_packages:  # ./dev capture: installed in a container, locked apart\n"


@pytest.mark.parametrize("text, expected", [
    ("variants:\n  cpu:\n    base: x\n",
     f"variants:\n  cpu:\n    {BLOCK}      - a==1\n    base: x\n"),
    ("variants:\n  cpu:\n    base: x\n    added_packages: [b==2]  # mine\n    python: '3.10'\n",
     f"variants:\n  cpu:\n    base: x\n    {BLOCK}      - a==1\n    python: '3.10'\n"),
    ("variants:\n  cpu:\n    added_packages:\n    - b==2\n\n    - c==3\n# kept\n  cu117:\n    base: y\n",
     f"variants:\n  cpu:\n    {BLOCK}      - a==1\n# kept\n  cu117:\n    base: y\n"),
    ("variants:\n    cu117:\n        base: y\n",
     f"variants:\n    cpu:\n      {BLOCK}        - a==1\n    cu117:\n        base: y\n"),
    ("image:\n  repository: x\n", f"image:\n  repository: x\nvariants:\n  cpu:\n    {BLOCK}      - a==1\n"),
    ("image: {repository: x}", f"image: {{repository: x}}\nvariants:\n  cpu:\n    {BLOCK}      - a==1\n"),
])
def test_the_block_is_replaced_or_added_and_nothing_else_changes(text, expected):
    assert capture.declared_text(text, Path("o.yaml"), variant="cpu", packages=("a==1",)) == expected


def test_a_variant_written_on_one_line_is_refused_naming_file_and_line():
    with pytest.raises(UsageError, match=r"o.yaml:2: variants.cpu is written on one line"):
        capture.declared_text("variants:\n  cpu: {base: x}\n", Path("o.yaml"), variant="cpu", packages=("a==1",))


def test_additions_replace_a_declared_version_and_keep_the_others_sorted():
    declared = ("Zeta==1", "einops==0.7.0")
    found = [capture.Addition("einops", "0.8.1", "/s"), capture.Addition("attrs", "23.1", "/s")]
    assert capture.merged(declared, found) == ("attrs==23.1", "einops==0.8.1", "Zeta==1")
    assert capture.lockable([capture.Addition("x", "1", "/s", "file:///w/x")]) == (
        [], [capture.Addition("x", "1", "/s", "file:///w/x")])
