"""Files are replaced whole: a reader never sees half of one, a failure leaves the old one and no temporary."""
import pytest

from torchdev.errors import TorchdevError
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
