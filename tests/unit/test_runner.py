"""The runner and the presenter: a command's result or its known error becomes what the user sees and one exit
status, every result type has its presentation, and a command writes only to the context's streams."""
from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from torchdev import commands, results
from torchdev.build import BuildResult, BuildStatus
from torchdev.errors import ConfigError, TorchdevError, UsageError
from torchdev.runner import execute, task_name

FAILED_BUILD = BuildResult("cu118", BuildStatus.FAILED, 3.0, cause="ERROR: failed to solve", log=Path("/l/cu118.log"))


def failing(error: Exception):
    def command(ctx, **options):
        raise error
    return command


@pytest.mark.parametrize("error, status", [(TorchdevError("the engine refused"), 1),
                                           (UsageError("say which image"), 2), (ConfigError("images.yaml:3: bad"), 2)])
def test_a_known_error_is_its_line_on_stderr_and_its_exit_status(error, status):
    ctx = make_context()
    assert execute(ctx, failing(error)) == status
    assert output(ctx) == ("", f"torchdev: {error}\n")


def test_each_line_of_an_error_is_a_torchdev_line_once():
    ctx = make_context()
    assert execute(ctx, failing(TorchdevError("first problem\ntorchdev: second problem"))) == 1
    assert output(ctx)[1] == "torchdev: first problem\ntorchdev: second problem\n"


def test_a_result_is_presented_with_its_failures_on_stderr_and_its_status(tmp_path):
    ctx = make_context()
    assert execute(ctx, lambda ctx, **options: results.BuildReport((FAILED_BUILD,))) == 1
    out, err = output(ctx)
    assert out.startswith("\nimage ") and "ERROR: failed to solve" in out
    assert err == "torchdev: cu118 failed: ERROR: failed to solve (full log: /l/cu118.log)\n"


def test_a_command_can_show_a_result_on_its_way_and_end_with_another():
    def up_like(ctx):
        ctx.show(results.BuildReport((FAILED_BUILD,)))
        print("==> more work", file=ctx.out)
        return results.Exited(3)

    ctx = make_context()
    assert execute(ctx, up_like) == 3
    out, err = output(ctx)
    assert out.index("cu118") < out.index("==> more work") and err.startswith("torchdev: cu118 failed")


def test_an_unexpected_exception_is_one_line_saying_it_is_a_bug_and_where_its_traceback_is(tmp_path):
    ctx = make_context(reports=tmp_path)
    assert execute(ctx, failing(KeyError("bug"))) == 70
    out, err = output(ctx)
    [log] = (tmp_path / "bugs").iterdir()
    assert out == "" and err == (f"torchdev: a bug in torchdev: KeyError: 'bug' (traceback in {log}): please report it "
                                 "with that file; TORCHDEV_DEBUG=1 or ./dev --debug shows the traceback here\n")
    assert "Traceback (most recent call last)" in log.read_text() and "raise error" in log.read_text()


def test_the_traceback_of_a_bug_goes_to_the_temporary_folder_when_reports_cannot_take_it(tmp_path):
    (tmp_path / "bugs").write_text("a file where the folder would be")
    ctx = make_context(reports=tmp_path)
    assert execute(ctx, failing(ValueError("bug"))) == 70
    log = Path(output(ctx)[1].split("(traceback in ")[1].split(")")[0])
    assert log.parent.parent == Path(tempfile.gettempdir()) and "ValueError: bug" in log.read_text()
    log.unlink()


def test_torchdev_debug_shows_the_traceback_of_any_error_on_stderr(tmp_path):
    ctx = make_context(reports=tmp_path, environ={"TORCHDEV_DEBUG": "1"})
    assert execute(ctx, failing(KeyError("bug"))) == 70
    assert output(ctx)[1].startswith("Traceback (most recent call last)") and "a bug in torchdev" in output(ctx)[1]
    ctx = make_context(reports=tmp_path, environ={"TORCHDEV_DEBUG": "1"})
    assert execute(ctx, failing(UsageError("say which image"))) == 2
    assert output(ctx)[1].startswith("Traceback") and output(ctx)[1].endswith("\ntorchdev: say which image\n")


def test_an_interrupt_is_one_line_and_exit_status_130():
    ctx = make_context()
    build = failing(KeyboardInterrupt())
    build.__name__ = "build"
    assert execute(ctx, build) == 130
    assert output(ctx) == ("", "torchdev: ./dev build was interrupted by SIGINT (Ctrl-C): what it had started is "
                               "stopped and removed (containers, temporary files), what had finished stays\n")


def sends_itself(number: int, seen: list[str]):
    """A command that receives `number` from outside half-way, as a scheduler's SIGTERM or a terminal's Ctrl-C would
    reach it, and records which of its `finally` blocks ran."""
    def smoke(ctx):
        try:
            os.kill(os.getpid(), number)
            time.sleep(5)
            seen.append("went on after the signal")
        finally:
            seen.append("cleaned up")
    smoke.__name__ = "run_smoke"
    return smoke


@pytest.mark.parametrize("number, status, name", [(signal.SIGTERM, 143, "SIGTERM"),
                                                   (signal.SIGINT, 130, "SIGINT (Ctrl-C)")])
def test_sigterm_and_sigint_unwind_the_command_through_its_clean_up_and_exit_with_the_signals_status(
        number, status, name):
    """Python's own SIGTERM ends the process on the spot, with nothing removed: the runner turns both signals into an
    interrupt raised where the command is, so its clean-up runs, and then restores the handlers it found."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen: list[str] = []
    engine = FakeEngine()
    ctx = make_context(engine=engine)

    def connected_then_signalled(ctx):
        ctx.engine()
        return sends_itself(number, seen)(ctx)
    connected_then_signalled.__name__ = "run_smoke"
    started = time.monotonic()
    assert execute(ctx, connected_then_signalled) == status
    assert time.monotonic() - started < 4, "the signal did not interrupt the command"
    assert seen == ["cleaned up"]
    assert output(ctx) == ("", f"torchdev: ./dev smoke was interrupted by {name}: what it had started is stopped and "
                               "removed (containers, temporary files), what had finished stays\n")
    assert engine.swept == 1, "the engine it connected to was swept for containers of its own"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_second_signal_while_the_command_cleans_up_does_not_cut_the_clean_up_short():
    seen: list[str] = []

    def cleaning_slowly(ctx):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a CI runner that signals twice
            time.sleep(0.1)
            seen.append("clean-up finished")
    ctx = make_context()
    assert execute(ctx, cleaning_slowly) == 143
    assert seen == ["clean-up finished"]


def test_every_task_name_reads_as_dev_names_it():
    assert [task_name(command) for command in (commands.run_smoke, commands.verify_repro, commands.list_images,
                                               commands.show_matrix, commands.save_bases, commands.up)] == [
        "smoke", "verify-repro", "images", "matrix", "save-bases", "up"]


def test_commands_write_to_the_contexts_streams_only(tmp_path, capsys):
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    ctx = make_context(engine=FakeEngine(), reports=tmp_path)
    assert execute(ctx, commands.show_matrix, overlay=None) == 0
    assert execute(ctx, commands.build, variant="cpu", every=False, dry_run=True, overlay=None, unlocked=True) == 0
    assert execute(ctx, commands.list_images, overlay=None) == 0
    assert execute(ctx, commands.lock, variant="cu117", every=False, check=True, overlay=None) == 0
    assert capsys.readouterr() == ("", "")
    out, err = output(ctx)
    assert "repository: " in out and "cpu: build plan" in out and "no torchdev images yet" in out
    assert "cu117 on linux/amd64: locks/cu117.txt matches the matrix" in out and err == ""
