"""The layering promised in the README holds: import-linter's contracts (pyproject.toml) are all kept."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"import contracts broken:\n{result.stdout}\n{result.stderr}"
    assert "Contracts: 5 kept, 0 broken" in result.stdout, result.stdout


def _contract_layers(name_prefix: str) -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["name"].startswith(name_prefix)]
    return contract["layers"]


def _drawn_layers() -> list[str]:
    """The README's import drawing, one layer per line: the names before the description, arrows stripped."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- import layers (checked against pyproject.toml) -->\n```\n", 1)[1].split("```", 1)[0]
    layers = []
    for line in block.splitlines():
        names = re.split(r"\s{2,}", line.replace("└─>", "").strip(), maxsplit=1)[0]
        layers.append(" | ".join(part.strip() for part in names.split("|")))
    return layers


def test_the_readme_drawing_is_the_import_contracts() -> None:
    faces = _contract_layers("Faces:")
    product = [
        " | ".join(p.strip().removeprefix("gpufleet.") for p in layer.split("|"))
        for layer in _contract_layers("Product layers:")
    ]
    assert _drawn_layers() == [*faces, *product]
