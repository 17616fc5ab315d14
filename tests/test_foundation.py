"""The foundation: CLI entry point, atomic writes, image reading errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from darkseg.cli import COMMANDS, main
from darkseg.utils.io import ImageReadError, atomic_open, load_json, read_image, write_image


def test_cli_help_lists_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "darkseg", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("darkseg ")


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"partial")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_image_roundtrip_keeps_rgb_order(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 200  # red
    write_image(tmp_path / "a.png", img)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (4, 5, 3)
    assert (back[..., 0] == 200).all() and (back[..., 2] == 0).all()


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="corrupt.jpg"):
        read_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_load_json_reports_position(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"images": [1, 2,]}')
    with pytest.raises(ValueError, match=r"bad.json: malformed JSON at line 1"):
        load_json(p)


def test_atomic_files_honour_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_keep_freed_memory_is_idempotent_and_memory_stays_usable():
    import platform
    import sys

    import torch

    from darkseg.utils.runtime import keep_freed_memory

    ok = keep_freed_memory()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert ok is glibc  # applied with glibc, a no-op elsewhere
    assert keep_freed_memory() == ok
    for _ in range(3):  # large allocations freed and reused still hold correct values
        x = torch.full((64, 1024, 1024), 2.0)
        assert float(x.sum()) == 2.0 * 64 * 1024 * 1024
        del x
