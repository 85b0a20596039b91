"""SHA-256 records of artefacts, checked before load (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core.integrity import (
    IntegrityError,
    check_sums,
    file_sums,
    read_sidecar,
    sha256_hex,
    sidecar_path,
    verified_by_sidecar,
    verified_bytes,
    write_sidecar,
)


def test_verified_bytes_names_the_file_and_both_hashes(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"good")
    assert verified_bytes(f, sha256_hex(b"good"), recorded_in="meta.json") == b"good"
    f.write_bytes(b"evil")
    with pytest.raises(IntegrityError) as err:
        verified_bytes(f, sha256_hex(b"good"), recorded_in="meta.json")
    assert str(f) in str(err.value) and sha256_hex(b"good") in str(err.value) and sha256_hex(b"evil") in str(err.value)
    with pytest.raises(IntegrityError, match=r"no SHA-256 recorded in meta\.json"):
        verified_bytes(f, None, recorded_in="meta.json")


def test_sidecar_is_written_after_and_checked_with_its_provenance(tmp_path: Path) -> None:
    f = tmp_path / "head.so"
    f.write_bytes(b"object")
    with pytest.raises(IntegrityError, match="no SHA-256 recorded"):  # artefact without its record
        verified_by_sidecar(f)
    write_sidecar(f, b"object", {"source_sha256": "s1"})
    assert json.loads(sidecar_path(f).read_text())["sha256"] == sha256_hex(b"object")
    assert verified_by_sidecar(f, {"source_sha256": "s1"}) == b"object"
    with pytest.raises(IntegrityError, match="built from source_sha256='s1', expected 's2'"):
        verified_by_sidecar(f, {"source_sha256": "s2"})
    f.write_bytes(b"obj")  # truncated
    with pytest.raises(IntegrityError, match="does not match"):
        verified_by_sidecar(f, {"source_sha256": "s1"})
    sidecar_path(f).write_text("{not json")
    assert read_sidecar(f) == {}


def test_check_sums_refuses_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.npy").write_bytes(b"1")
    (tmp_path / "y.parquet").write_bytes(b"2")
    (tmp_path / "manifest.json").write_text("{}")
    sums = file_sums(tmp_path, skip=("manifest.json",))
    assert set(sums) == {"d/x.npy", "y.parquet"}
    check_sums(tmp_path, sums, recorded_in="manifest.json", skip=("manifest.json",))
    with pytest.raises(IntegrityError, match="no file hashes recorded"):
        check_sums(tmp_path, {}, recorded_in="manifest.json", skip=("manifest.json",))
    (tmp_path / "extra").write_bytes(b"")
    with pytest.raises(IntegrityError, match="extra is not listed"):
        check_sums(tmp_path, sums, recorded_in="manifest.json", skip=("manifest.json",))
    (tmp_path / "extra").unlink()
    (tmp_path / "d" / "x.npy").write_bytes(b"3")
    with pytest.raises(IntegrityError, match=f"d/x.npy has SHA-256 {sha256_hex(b'3')}, not the {sha256_hex(b'1')}"):
        check_sums(tmp_path, sums, recorded_in="manifest.json", skip=("manifest.json",))
    (tmp_path / "d" / "x.npy").unlink()
    with pytest.raises(IntegrityError, match=r"d/x\.npy is missing"):
        check_sums(tmp_path, sums, recorded_in="manifest.json", skip=("manifest.json",))
