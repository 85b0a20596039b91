"""A typo in params.yaml stops ``dvc repro`` at the first stage, naming the key's path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.tiny_project import make_project, tool_env


def test_dvc_repro_fails_on_a_params_typo_naming_the_key(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ranking"]["num_leavs"] = params["ranking"].pop("num_leaves")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "repro", "generate"],
        cwd=root, env=tool_env(), capture_output=True, text=True, timeout=600,
    )
    output = out.stdout + out.stderr
    assert out.returncode != 0, output
    assert "ranking.num_leavs: unknown key" in output and "ranking.num_leaves: missing key" in output
    assert not (root / "data" / "drops" / "synthetic" / "events").exists()  # nothing was generated
