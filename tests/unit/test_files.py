"""Files are replaced whole: a reader never sees half of one, a failure leaves the old one and no temporary; only a
regular file is ever replaced, and a file torchdev is told to read must be one."""
import os
import re
import stat

import pytest

from torchdev.errors import TorchdevError, UsageError
from torchdev.files import write_atomically


def test_a_file_is_replaced_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "locks" / "cu118.txt"
    write_atomically(path, "old\n")
    write_atomically(path, b"new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in path.parent.iterdir()] == ["cu118.txt"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failure_part_way_leaves_the_old_file_its_mode_and_no_temporary(tmp_path):
    path = tmp_path / "images.yaml"
    path.write_text("old\n")
    path.chmod(0o600)

    def chunks():
        yield b"half of the new"
        raise OSError("the disk is full")

    with pytest.raises(TorchdevError, match=r"^cannot write .*images.yaml \(the disk is full\): free some space"):
        write_atomically(path, chunks())
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["images.yaml"]
    write_atomically(path, iter([b"new", b"\n"]))
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o600


def test_only_a_regular_file_is_replaced_and_a_link_out_of_the_folder_is_refused(tmp_path):
    from torchdev.files import check_output_folder, input_file

    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(outside)
    (tmp_path / "out" / "inside.txt").write_text("old\n")
    (tmp_path / "out" / "inner").symlink_to("inside.txt")
    for path, says in ((tmp_path / "folder", "is a folder, not a regular file"),
                       (tmp_path / "fifo", "is a FIFO, not a regular file"),
                       (tmp_path / "out" / "link", f"is a symbolic link to {outside}, out of {tmp_path / 'out'}")):
        with pytest.raises(UsageError, match=re.escape(says)):
            write_atomically(path, "new\n")
    assert outside.read_text() == "theirs\n" and stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)
    write_atomically(tmp_path / "out" / "inner", "new\n")
    assert (tmp_path / "out" / "inside.txt").read_text() == "new\n" and (tmp_path / "out" / "inner").is_symlink()
    with pytest.raises(UsageError, match="is a regular file, not a folder"):
        check_output_folder(outside / "sub")
    with pytest.raises(UsageError, match=r"\(--key\) is a FIFO, not a regular file: name the file itself"):
        input_file(tmp_path / "fifo", role="--key")
    assert input_file(tmp_path / "missing", role="--key") is None
