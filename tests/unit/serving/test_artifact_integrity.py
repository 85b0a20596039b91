"""The serving artefact set is checked against the SHA-256 of every file in its manifest before
FAISS, Parquet or NumPy opens any of them (issue 16). The real export and a real set are
covered end to end in tests/e2e/test_serving_engine.py; here a minimal folder shows the order:
the hash check refuses before any parser runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core.integrity import file_sums, sha256_hex
from components.retrieval.serving_set import SCHEMA_VERSION, feature_version
from components.serving.artifacts import ArtifactError, open_artifacts


def _set(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    manifest = {"schema_version": SCHEMA_VERSION, "feature_version": feature_version(), "arrays": {},
                "files": file_sums(root)}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_changed_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    root = _set(tmp_path, {"index.faiss": b"not an index", "contents.parquet": b"not parquet"})
    # the recorded bytes pass the hash check and reach the parsers (which refuse them otherwise)
    with pytest.raises(Exception) as parsed:
        open_artifacts(root)
    assert "SHA-256" not in str(parsed.value)
    (root / "index.faiss").write_bytes(b"crafted index")
    with pytest.raises(ArtifactError) as refused:
        open_artifacts(root)
    msg = str(refused.value)
    assert f"{root / 'index.faiss'} has SHA-256 {sha256_hex(b'crafted index')}, not the {sha256_hex(b'not an index')}" in msg
    assert "dvc repro export" in msg


def test_a_set_without_hashes_or_with_extra_files_is_refused(tmp_path: Path) -> None:
    root = _set(tmp_path, {"index.faiss": b"x"})
    (root / "extra.so").write_bytes(b"code")
    with pytest.raises(ArtifactError, match=r"extra\.so is not listed"):
        open_artifacts(root)
    (root / "extra.so").unlink()
    m = json.loads((root / "manifest.json").read_text())
    del m["files"]
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="no file hashes recorded"):
        open_artifacts(root)
