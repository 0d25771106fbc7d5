"""The suite report: results.json (everything), report.md and pipelines.png (matplotlib, extra
`ragkit[reports]`: without it the report has no plot and says so)."""

from __future__ import annotations

import json
from pathlib import Path

from ragkit.eval.suite.spec import PairResult, Suite, SuiteResult
from ragkit.redaction import redact, redact_value

_REPORT_EXAMPLES = 5


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _markdown(result: SuiteResult, suite: Suite) -> str:
    failures = result.failures
    status = "PASSED" if result.passed else f"FAILED ({len(failures)} of {len(result.thresholds)} checks)"
    lines = [
        f"# Eval suite `{result.suite}`: {status}",
        "",
        f"Suite file `{result.suite_file}`, run {result.started_at} in {result.duration_s:.0f} s "
        f"(ragkit {result.environment.get('ragkit', '?')}, Python {result.environment.get('python', '?')}).",
    ]
    if suite.description:
        lines += ["", suite.description.strip()]
    lines += ["", "## Thresholds", ""]
    if not result.thresholds:
        lines.append("No thresholds: nothing gates this suite.")
    for check in result.thresholds:
        lines.append(f"- {'PASS' if check.passed else '**FAIL**'} `{check.describe()}`")
    if failures:
        lines += ["", "## Failures", ""]
        for check in failures:
            why = "could not be measured (no question qualifies)" if check.value is None else (
                f"{check.value:.4f} is {'below' if check.bound == 'min' else 'above'} {check.limit:g}"
            )
            lines.append(f"- `{check.metric}` on {check.dataset} / {check.pipeline}: {why}")
    lines += ["", "![metrics by pipeline](pipelines.png)"]

    datasets = list(dict.fromkeys(r.dataset for r in result.results))
    for dataset in datasets:
        pairs = [r for r in result.results if r.dataset == dataset]
        kind = pairs[0].kind
        counts = pairs[0].counts
        lines += [
            "",
            f"## {dataset} ({kind})",
            "",
            f"{counts.get('questions', 0)} questions, {counts.get('retrieval_queries', 0)} with expected "
            f"sources for retrieval; {counts.get('sampled', 0)} sampled for generated answers "
            f"({counts.get('unanswerable', 0)} unanswerable, {counts.get('with_reference', 0)} with references).",
            "",
            "| metric | " + " | ".join(p.pipeline for p in pairs) + " |",
            "|---|" + "---:|" * len(pairs),
        ]
        for metric in pairs[0].metrics:
            failed = {
                c.pipeline for c in failures if c.dataset == dataset and c.metric == metric
            }
            cells = [
                (f"**{_fmt(p.metrics.get(metric))}** (fail)" if p.pipeline in failed else _fmt(p.metrics.get(metric)))
                for p in pairs
            ]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines += ["", "| timing | " + " | ".join(p.pipeline for p in pairs) + " |", "|---|" + "---:|" * len(pairs)]
        for key in ("ingest_s", "retrieval_s", "query_s", "generate_s", "answer_ms_mean", "faithfulness_s", "total_s"):
            if any(key in p.timings for p in pairs):
                lines.append(
                    f"| {key} | " + " | ".join(f"{p.timings[key]:.1f}" if key in p.timings else "" for p in pairs) + " |"
                )
        for pair in pairs:
            notes = _sample_notes(pair)
            if pair.warnings or notes:
                lines += ["", f"### {dataset} / {pair.pipeline}: answers to look at", ""]
                lines += [f"- warning: {w}" for w in pair.warnings]
                lines += notes
    lines += [
        "",
        "## Metrics",
        "",
        "Retrieval metrics follow ranx (`ragkit/eval/metrics.py`); answer metrics are defined in "
        "`ragkit/eval/suite.py` and `ragkit/eval/answers.py`. Per-question answers and scores are in "
        "`results.json`.",
        "",
    ]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample_notes(pair: PairResult) -> list[str]:
    notes: list[str] = []
    for s in pair.samples:
        if "expected_sources" not in s:  # a qa dataset: its own report (`ragkit eval qa --report`)
            continue
        if not s["expected_sources"] and not s["abstained"]:
            notes.append(f"- {s['id']}: unanswerable, but answered: \"{_one_line(s['answer'])}\"")
        elif s["expected_sources"] and s["abstained"]:
            notes.append(f"- {s['id']}: answerable, but answered \"I don't know\" ({_one_line(s['question'])})")
        elif s.get("containment") == 0.0:
            notes.append(
                f"- {s['id']}: reference not in the answer: \"{_one_line(s['answer'])}\" "
                f"(expected: {_one_line('; '.join(s.get('references', []) + s.get('keywords', [])), 80)})"
            )
    scored = sorted((s for s in pair.samples if "faithfulness" in s), key=lambda s: s["faithfulness"])
    for s in scored[:_REPORT_EXAMPLES]:
        if s["faithfulness"] >= 0.5:
            break
        claims = "; ".join(_one_line(c["text"], 80) for c in s.get("unsupported_claims", [])[:2])
        notes.append(f"- {s['id']}: faithfulness {s['faithfulness']:.2f}; unsupported: {claims or '-'}")
    return notes


def _plot(result: SuiteResult, path: Path) -> bool:
    """Draw pipelines.png; False (no plot) when matplotlib (extra `ragkit[reports]`) is missing."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in result.results))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 4.2 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        pairs = [r for r in result.results if r.dataset == dataset]
        metrics = [
            m for m in pairs[0].metrics
            if not m.startswith("hits") and any(p.metrics.get(m) is not None for p in pairs)
        ]
        width = 0.8 / max(len(pairs), 1)
        for i, pair in enumerate(pairs):
            xs = [j + (i - (len(pairs) - 1) / 2) * width for j in range(len(metrics))]
            values = [pair.metrics.get(m) or 0.0 for m in metrics]
            bars = ax.bar(xs, values, width=width, label=pair.pipeline)
            for bar, metric in zip(bars, metrics):
                value = pair.metrics.get(metric)
                if value is None:
                    bar.set_hatch("//")
                ax.text(
                    bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                    "n/a" if value is None else f"{value:.2f}", ha="center", va="bottom", fontsize=6,
                )
        order = [p.pipeline for p in pairs]
        for check in result.thresholds:  # one check per pipeline: drawn over that pipeline's bar
            if check.dataset == dataset and check.metric in metrics and check.pipeline in order:
                x = metrics.index(check.metric) + (order.index(check.pipeline) - (len(pairs) - 1) / 2) * width
                color = "black" if check.passed else "red"
                ax.hlines(check.limit, x - width / 2, x + width / 2, colors=color, linestyles="dashed", linewidth=1.2)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{dataset}: metrics by pipeline (dashed: thresholds, red = failed)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(result: SuiteResult, suite: Suite, report_dir: str | Path) -> None:
    """`results.json` (everything, per-question samples included), `report.md`, `pipelines.png`."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    data = result.model_dump()
    data["failures"] = [c.model_dump() for c in result.failures]
    # Answers, warnings and errors may quote what a server echoed: mask secrets in both files.
    (report_dir / "results.json").write_text(
        json.dumps(redact_value(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    markdown = _markdown(result, suite)
    if not _plot(result, report_dir / "pipelines.png"):
        markdown += "\n(No pipelines.png: install the plotting extra, `pip install 'ragkit[reports]'`.)\n"
    (report_dir / "report.md").write_text(redact(markdown), encoding="utf-8")
