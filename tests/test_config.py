"""Pipeline config: YAML mirrors the pydantic model; bad input names the field."""

from pathlib import Path

import pytest

from ragkit.config import PipelineConfig, PipelineError, load_pipeline, parse_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_equals_builtin_defaults():
    # The CLI falls back to PipelineConfig() when no pipeline is given; it must be default.yaml.
    assert load_pipeline(ROOT / "pipelines" / "default.yaml") == PipelineConfig()


def test_every_shipped_pipeline_loads():
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        config = load_pipeline(path)
        assert config.name == path.stem


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"generator": {"name": "gpt"}}, "generator", "'extractive', 'local', 'openai'"),
        ({"retrieval": {"fusion": {"name": "borda"}}}, "retrieval.fusion", "'convex', 'rrf'"),
        ({"retrieval": {"topk": 3}}, "retrieval.topk", "Extra inputs"),
        ({"chunker": {"chunk_size": 10, "chunk_overlap": 10}}, "chunker", "smaller than chunk_size"),
        ({"sparse": {"b": 2}}, "sparse.b", "less than or equal to 1"),
    ],
)
def test_invalid_pipeline_names_the_field(raw, field, words):
    with pytest.raises(PipelineError) as info:
        parse_pipeline(raw, origin="p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml: invalid pipeline")
    assert f"- {field}" in message
    assert words in message


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("chunker: [unclosed\n")
    with pytest.raises(PipelineError, match="broken.yaml: invalid YAML"):
        load_pipeline(path)
    with pytest.raises(PipelineError, match="pipeline file not found"):
        load_pipeline(tmp_path / "missing.yaml")


def test_omitted_component_name_takes_the_default():
    config = parse_pipeline({"chunker": {"chunk_size": 120}, "retrieval": {"fusion": {"center": 0.4}}})
    assert config.chunker.name == "markdown" and config.chunker.chunk_size == 120
    assert config.retrieval.fusion.name == "adaptive" and config.retrieval.fusion.center == 0.4
    # the field's default (adaptive), never another component that happens to accept the keys (convex, rrf)
    with pytest.raises(PipelineError, match="retrieval.fusion"):
        parse_pipeline({"retrieval": {"fusion": {"weights": {"dense": 0.5, "sparse": 0.5}}}})
    with pytest.raises(PipelineError, match="retrieval.rerank"):  # the default reranker is none: no top_n
        parse_pipeline({"retrieval": {"rerank": {"top_n": 5}}})


def test_api_key_is_never_saved():
    config = parse_pipeline({"generator": {"name": "openai", "api_key": "sk-secret-123"}})
    assert config.generator.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in config.to_yaml()
    assert "sk-secret-123" not in repr(config)
    # and the saved YAML loads back to the same pipeline minus the key
    assert parse_pipeline(__import__("yaml").safe_load(config.to_yaml())).generator.api_key is None
