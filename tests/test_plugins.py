"""Third-party components: the plugin package in tests/plugin_demo is built and installed (pip, into
a directory of its own) exactly as a user's would be, and ragkit finds it through the
`ragkit.components` entry point with no edit to ragkit: a vector store, a reranker, a loader and
an answer metric. A pipeline uses the store and the reranker end to end through the real CLI, and
the plugin store passes the vector store conformance suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vector_store_conformance import VectorStoreConformance

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugin_demo"


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin wheel built and installed into its own directory (what `pip install` does)."""
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-src") / "plugin_demo"
    shutil.copytree(PLUGIN_SOURCE, build)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(build)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(target.glob("ragkit_demo_plugin-*.dist-info"))
    return target


def ragkit(plugin_dir: Path, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ragkit {args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_plugin_components_are_listed(plugin_dir: Path, tmp_path: Path) -> None:
    listed = json.loads(ragkit(plugin_dir, "components", "--json", cwd=tmp_path).stdout)
    plugin = {(c["stage"], c["name"]): c for c in listed if c["module"] == "ragkit_demo_plugin"}
    assert set(plugin) == {
        ("vector_store", "numpy-exact"), ("reranker", "keyword-overlap"), ("loader", "log"), ("answer_metric", "brevity")
    }  # fmt: skip
    assert plugin[("loader", "log")]["extensions"] == [".log"]
    assert "skip_debug" in plugin[("loader", "log")]["config_schema"]["properties"]
    builtin = {(c["stage"], c["name"]) for c in listed if c["module"].startswith("ragkit.")}
    assert ("vector_store", "faiss") in builtin and ("generator", "extractive") in builtin


@pytest.mark.slow
def test_a_pipeline_uses_the_plugin_store_reranker_and_loader(plugin_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "data" / "missions", corpus / "missions")
    (corpus / "ops.log").write_text(
        "2024-01-02 INFO probe Juno entered orbit around Jupiter\n2024-01-02 DEBUG heartbeat ok\n"
    )
    (tmp_path / "plugin.yaml").write_text(
        f"extends: {ROOT / 'pipelines' / 'default.yaml'}\n"
        "name: with-plugins\n"
        "loader: {log: {skip_debug: true}}\n"
        "dense: {backend: {name: numpy-exact}}\n"
        "retrieval: {rerank: {name: keyword-overlap, top_n: 8}}\n"
    )
    report = json.loads(ragkit(plugin_dir, "ingest", "corpus", "--index", "idx", "--pipeline", "plugin.yaml", "--json", cwd=tmp_path).stdout)
    assert report["files_failed"] == [] and report["documents_added"] >= 2
    answer = json.loads(
        ragkit(plugin_dir, "query", "When did Voyager 1 launch?", "--index", "idx", "--json", cwd=tmp_path).stdout
    )
    assert answer["citations"] and "voyager" in answer["citations"][0]["source"]
    log_hit = json.loads(ragkit(plugin_dir, "query", "Which probe entered orbit around Jupiter?", "--index", "idx", "--json", cwd=tmp_path).stdout)
    assert any(h["source"].endswith("ops.log") and "DEBUG" not in h["text"] for h in log_hit["hits"])
    status = json.loads(ragkit(plugin_dir, "status", "--verify", "--index", "idx", "--json", cwd=tmp_path).stdout)
    assert status["dense_backend"] == "numpy-exact (plugin)" and status["verify"]["ok"]
    # the reranker ran: every hit carries its rerank rank (checked through the Python API)
    code = (
        "from ragkit import RAG; rag = RAG.open('idx'); hits = rag.retrieve('Voyager launch date');"
        "print(all('rerank' in h.retrievers for h in hits), type(rag.reranker).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    checked = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert checked.stdout.split() == ["True", "KeywordReranker"], checked.stderr


def test_without_the_plugin_its_names_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("dense: {backend: {name: numpy-exact}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "ingest", "x", "--pipeline", "p.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2 and "dense.backend" in result.stderr and "'faiss'" in result.stderr


@pytest.fixture(scope="module")
def plugin_imported(plugin_dir: Path) -> Iterator[None]:
    """The plugin imported into this process (registering it rebuilds the pipeline's unions), and
    unregistered afterwards: later test modules must not see its components (their module-level
    configs were made without them). Restoring touches the registry's private state: tests only."""
    from ragkit import components

    saved = dict(components._registry)
    sys.path.insert(0, str(plugin_dir))
    import ragkit_demo_plugin  # noqa: F401

    yield
    sys.path.remove(str(plugin_dir))
    with components._lock:
        components._registry.clear()
        components._registry.update(saved)
        components._version += 1  # else the listeners see an unchanged registry and keep the plugin's fields
    for listener in list(components._listeners):
        listener()
    from ragkit.config import LoaderConfig

    assert "log" not in LoaderConfig.model_fields  # the next modules' pipelines must not carry `loader.log`


@pytest.mark.slow
@pytest.mark.usefixtures("plugin_imported")
class TestPluginStoreConformance(VectorStoreConformance):
    @pytest.fixture
    def backend(self) -> dict[str, Any]:
        return {"name": "numpy-exact"}
