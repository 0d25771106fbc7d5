"""The README's Python snippets run as written (in a copy of the repo's data/ and pipelines/),
so the documented API cannot drift from the real one. Real model, real index."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.slow
def test_readme_python_snippets_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    shutil.copytree(ROOT / "data", tmp_path / "data")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        for block in blocks:  # one namespace, in order: later snippets use earlier names (`rag`)
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(old)
    printed = capsys.readouterr().out
    assert "Galileo" in printed  # the answer to the README's question, with its sources printed
