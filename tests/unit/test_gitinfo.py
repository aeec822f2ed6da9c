"""Provenance from a real git checkout: the epoch follows the build inputs' last commit, or SOURCE_DATE_EPOCH."""
import subprocess
from datetime import date

import pytest

from torchdev.errors import ConfigError
from torchdev.gitinfo import read_provenance


def commit(repo, path, text, when):
    (repo / path).write_text(text)
    env = {"GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000", "HOME": str(repo)}
    subprocess.run(["git", "-C", str(repo), "add", path], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", path],
                   check=True, env=env)


@pytest.fixture()
def repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    commit(tmp_path, "images.yaml", "a", 1_700_000_000)
    commit(tmp_path, "README.md", "b", 1_800_000_000)
    return tmp_path


def test_the_epoch_is_the_last_commit_of_the_build_inputs(repo):
    provenance = read_provenance(repo, inputs=("images.yaml",), environ={})
    assert provenance.source_date_epoch == 1_700_000_000
    assert read_provenance(repo, environ={}).source_date_epoch == 1_800_000_000
    assert len(provenance.revision) == 40 and provenance.stamp.git_sha == provenance.revision[:7]


def test_source_date_epoch_overrides_and_must_be_a_number(repo):
    assert read_provenance(repo, environ={"SOURCE_DATE_EPOCH": "42"}).source_date_epoch == 42
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH=yesterday is not a number"):
        read_provenance(repo, environ={"SOURCE_DATE_EPOCH": "yesterday"})


def test_an_uncommitted_change_marks_the_sha_dirty(repo):
    (repo / "images.yaml").write_text("changed")
    assert read_provenance(repo, environ={}).stamp.git_sha.endswith("-dirty")


def test_the_tags_date_is_the_inputs_day_never_the_build_day(repo):
    """The same inputs built on two days get one immutable tag: {date} is SOURCE_DATE_EPOCH's day (1_700_000_000 is
    2023-11-14 UTC), whatever the clock says."""
    assert read_provenance(repo, inputs=("images.yaml",), environ={}).stamp.day == date(2023, 11, 14)
    assert read_provenance(repo, environ={"SOURCE_DATE_EPOCH": "0"}).stamp.day == date(1970, 1, 1)
