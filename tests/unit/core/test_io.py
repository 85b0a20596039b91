"""Atomic writes: whole file or the old one, nothing left behind, data and rename fsynced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core import io


def test_text_bytes_and_json_land_whole_and_create_the_folder(tmp_path: Path) -> None:
    io.atomic_write_text(tmp_path / "a" / "t.txt", "héllo\n")
    io.atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    io.atomic_write_json(tmp_path / "a" / "j.json", {"b": 1, "a": [1.5]})
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a" / "j.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin", "j.json", "t.txt"]


def test_metrics_are_the_json_dvc_has_always_read(tmp_path: Path) -> None:
    metrics = {"z": 1, "a": {"y": 0.25, "b": None}}
    path = io.write_metrics(tmp_path / "m.json", metrics)
    assert path.read_text() == json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    io.write_metrics(path, metrics, sort_keys=False)
    assert path.read_text() == json.dumps(metrics, indent=2) + "\n"
    io.write_metrics(path, {"when": pd.Timestamp("2026-01-01", tz="UTC")})
    assert json.loads(path.read_text()) == {"when": "2026-01-01 00:00:00+00:00"}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    io.atomic_write_text(path, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_the_file_and_its_folder_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    io.atomic_write_text(tmp_path / "x.txt", "x")
    assert calls == ["file", "replace", "dir"]


def test_parquet_from_arrow_and_pandas_with_writer_options(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2, 3]})
    io.atomic_write_parquet(tmp_path / "t.parquet", table, compression="zstd")
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=[5, 6])
    io.atomic_write_parquet(tmp_path / "f.parquet", frame, index=False)
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert list(back.index) == [0, 1] and list(back["a"]) == [1.0, 2.0]


def test_numpy_keeps_its_name_and_memory_maps(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = io.atomic_write_numpy(tmp_path / "v.npy", arr)
    assert [p.name for p in tmp_path.iterdir()] == ["v.npy"]
    back = np.load(path, mmap_mode="r")
    assert isinstance(back, np.memmap) and np.array_equal(back, arr)


def test_no_module_rolls_its_own_fsync() -> None:
    """Durability lives in ``core.io``: a second ``os.fsync`` caller is a second atomic-write helper."""
    import ast

    root = Path(__file__).resolve().parents[3] / "components"
    callers = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "core" / "io.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "fsync" and ast.unparse(node.value) == "os":
                callers.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not callers, callers
