"""The README's Python snippets run as written (in a copy of the repo's data/ and pipelines/),
so the documented API cannot drift from the real one. Real model, real index."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


SERVER = "http://127.0.0.1:8000"  # where the README's client snippets expect `ragkit serve`


@pytest.mark.slow
def test_readme_python_snippets_run(tmp_path: Path) -> None:
    blocks = [b for b in python_blocks((ROOT / "README.md").read_text(encoding="utf-8")) if SERVER not in b]
    assert len(blocks) >= 2
    shutil.copytree(ROOT / "data", tmp_path / "data")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    # One script, in order (later snippets use earlier names, `rag`), in a fresh interpreter: a
    # snippet that registers a component must not change the registry of the other tests.
    (tmp_path / "readme.py").write_text("\n\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "readme.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Galileo" in result.stdout  # the answer to the README's question, with its sources printed


@pytest.mark.slow
def test_readme_client_snippets_run_against_a_real_server(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The openai SDK and MCP snippets, pointed at a real `ragkit serve` of data/ (tests/server_support.py)."""
    blocks = [b for b in python_blocks((ROOT / "README.md").read_text(encoding="utf-8")) if SERVER in b]
    assert len(blocks) >= 2
    for n, block in enumerate(blocks):
        script = tmp_path / f"client{n}.py"
        script.write_text(block.replace(SERVER, served.url), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "1977" in result.stdout, result.stdout
