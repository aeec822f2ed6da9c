"""torchdev/table.py: tables that narrow to a width by wrapping their widest cells, and sizes in binary units."""
from torchdev.table import human_size


def test_sizes_read_in_binary_units():
    assert [human_size(n) for n in (None, 512, 1536, 5 * 1024 ** 3)] == ["-", "512 B", "1.50 KiB", "5.00 GiB"]
