"""Loading stage: every format, every failure mode, and the directory walk rules.

All inputs are real files built in tmp_path (PDFs with fpdf2, .docx with python-docx).
Most tests chdir into tmp_path so paths stay relative, as a user would type them.
"""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.config import LoaderConfig, TabularConfig
from ragkit.loaders import (
    LoaderError,
    discover,
    load_file,
    load_paths,
)
from ragkit.loaders import csv as csv_loader
from ragkit.loaders import jsonl as jsonl_loader
from ragkit.loaders import text as text_loader
from ragkit.loaders.html import extract
from ragkit.loaders.patterns import glob_match

CONFIG = LoaderConfig()


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside tmp_path so relative paths are what the loaders see."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: str | Path, content: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def only_doc(path: str | Path, config: LoaderConfig = CONFIG):
    loaded = load_file(Path(path), config)
    assert loaded.failures == [], loaded.failures
    assert len(loaded.documents) == 1
    return loaded.documents[0]


def only_failure(path: str | Path, config: LoaderConfig = CONFIG) -> str:
    """The single whole-file failure's reason (and it must name the path)."""
    loaded = load_file(Path(path), config)
    assert loaded.documents == []
    assert len(loaded.failures) == 1, loaded.failures
    assert loaded.failures[0].path == Path(path).as_posix()
    return loaded.failures[0].reason


def make_pdf(path: Path, pages: list[str], title: str | None = None, **encryption: object) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.cell(text=text)
    if encryption:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(encryption_method=EncryptionMethod.RC4, **encryption)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


# --- plain text and markdown ---------------------------------------------------------------


def test_txt_utf8_bom_and_crlf_are_normalised(cwd: Path) -> None:
    write("notes/a.txt", b"\xef\xbb\xbfHello\r\nworld\rend\n")
    doc = only_doc("notes/a.txt")
    assert doc.text == "Hello\nworld\nend\n"
    assert doc.id == doc.source == "notes/a.txt"
    assert doc.metadata == {"encoding": "utf-8", "file_type": "text", "path": "notes/a.txt"}


def test_txt_latin1_falls_back_and_records_encoding(cwd: Path) -> None:
    write("a.txt", "café naïve – ok".encode("cp1252"))
    doc = only_doc("a.txt")
    assert doc.text == "café naïve – ok"
    assert doc.metadata["encoding"] == "cp1252"
    # 0x81 is undefined in cp1252: only latin-1 can decode it.
    write("b.txt", b"caf\xe9 \x81")
    doc = only_doc("b.txt")
    assert doc.text == "café \x81"
    assert doc.metadata["encoding"] == "latin-1"


@pytest.mark.parametrize(
    ("codec", "name"), [("utf-16", "utf-16"), ("utf-16-be", "utf-16"), ("utf-32", "utf-32")]
)
def test_txt_utf16_and_utf32_with_bom(cwd: Path, codec: str, name: str) -> None:
    data = "héllo\r\nwörld ✓".encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data  # the -be codec writes no BOM itself
    write("u.txt", data)
    doc = only_doc("u.txt")
    assert doc.text == "héllo\nwörld ✓"
    assert doc.metadata["encoding"] == name


def test_binary_txt_is_a_failure(cwd: Path) -> None:
    write("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert only_failure("image.txt") == "looks like a binary file (NUL bytes), not text"


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n  "])
def test_empty_or_blank_text_is_a_failure(cwd: Path, content: bytes) -> None:
    write("empty.txt", content)
    write("empty.md", content)
    assert only_failure("empty.txt") == "empty file"
    assert only_failure("empty.md") == "empty file"


def test_format_load_raises_loader_error(cwd: Path) -> None:
    write("empty.txt", b"")
    with pytest.raises(LoaderError, match="empty file"):
        text_loader.load(Path("empty.txt"), CONFIG)


def test_markdown_title_is_first_heading_outside_code_fences(cwd: Path) -> None:
    content = "Intro line\n\n```bash\n# not a heading\n```\n\n## Real Title ##\n\n# Later\n"
    write("doc.md", content)
    doc = only_doc("doc.md")
    assert doc.text == content  # kept raw for the markdown chunker
    assert doc.metadata == {
        "encoding": "utf-8",
        "title": "Real Title",
        "file_type": "markdown",
        "path": "doc.md",
    }


def test_markdown_without_heading_has_no_title(cwd: Path) -> None:
    write("plain.markdown", "#hashtag is not a heading\ntext\n")
    doc = only_doc("plain.markdown")
    assert "title" not in doc.metadata
    assert doc.metadata["file_type"] == "markdown"


# --- HTML ----------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head>
  <title>  Solar
     Notes </title>
  <style>body { color: red }</style>
  <script>var hidden = "script text";</script>
</head>
<body>
  <nav><a href="/">Home</a> | <a href="/x">Planets</a></nav>
  <h1>The   Sun</h1>
  <p>The Sun is a <b>G-type</b>
     star &amp; it is &lt;hot&gt; &eacute;nough.</p>
  <noscript>Enable JS</noscript>
  <template><p>template text</p></template>
  <svg><title>svg title</title><text>svg text</text></svg>
  <div>Line one<br>Line two</div>
  <h2>Facts <small>(2024)</small></h2>
  <ul><li>Hot</li><li>Big</li></ul>
  <pre>  x = 1
    y = 2</pre>
  <table><tr><td>Mass</td><td>1.989e30 kg</td></tr></table>
  <script>document.write("more script")</script>
</body></html>
"""


def test_html_visible_text_title_and_headings(cwd: Path) -> None:
    write("site/sun.html", PAGE)
    doc = only_doc("site/sun.html")
    assert doc.text == (
        "Home | Planets\n\n"
        "The Sun\n\n"
        "The Sun is a G-type star & it is <hot> énough.\n\n"
        "Line one\n\n"
        "Line two\n\n"
        "Facts (2024)\n\n"
        "- Hot\n- Big\n\n"
        "  x = 1\n    y = 2\n\n"
        "| Mass | 1.989e30 kg |"
    )
    assert doc.metadata["main_content"] == "whole page (no boilerplate found)"
    assert doc.metadata["title"] == "Solar Notes"
    assert doc.metadata["file_type"] == "html"
    assert doc.metadata["path"] == "site/sun.html"
    headings = doc.metadata["headings"]
    assert [(h["level"], h["text"]) for h in headings] == [(1, "The Sun"), (2, "Facts (2024)")]
    for heading in headings:
        start = heading["start"]
        assert doc.text[start : start + len(heading["text"])] == heading["text"]


def test_html_unclosed_head_and_declared_charset(cwd: Path) -> None:
    cyrillic = "Привет мир"
    page = f'<html><head><meta charset="koi8-r"><title>T</title><p>{cyrillic}</p>'
    write("ru.htm", page.encode("koi8-r"))
    doc = only_doc("ru.htm")
    assert doc.text == cyrillic
    assert doc.metadata["encoding"] == "koi8-r"
    assert doc.metadata["title"] == "T"


def test_html_5000_nested_divs(cwd: Path) -> None:
    depth = 5000
    write("deep.html", "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>")
    doc = only_doc("deep.html")
    assert doc.text == "deep text"
    # Also unclosed: the parser must not keep a stack that explodes either.
    text, title, headings = extract("<div><span>" * depth + "x")
    assert (text, title, headings) == ("x", None, [])


def test_html_unclosed_title_and_br_inside_pre() -> None:
    text, title, _ = extract("<title>Broken<body><p>Body text</p><pre>a<br>b</pre>")
    assert title == "Broken"
    assert text == "Body text\n\na\nb"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["<h2>", "</h2>", "<p>", "</p>", "<div>", "<b>", "</b>", "<br>",
                                 "<script>", "</script>", " ", "x y", "&amp;", "\n", "<pre>", "</pre>"])))
def test_html_headings_always_point_into_the_text(pieces: list[str]) -> None:
    text, _, headings = extract("".join(pieces))
    for heading in headings:
        start = heading["start"]
        assert text[start:].startswith(heading["text"].split(" ")[0])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_as_txt_load_or_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "f.txt"
    path.write_bytes(data)
    loaded = load_file(path, CONFIG)
    assert len(loaded.documents) + len(loaded.failures) == 1
    if loaded.documents:
        assert "\r" not in loaded.documents[0].text
        assert loaded.documents[0].text.strip()


def test_html_with_no_visible_text_is_a_failure(cwd: Path) -> None:
    write("blank.html", "<html><head><title>Title</title></head><body><script>x()</script></body></html>")
    assert only_failure("blank.html").startswith("no visible text")


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_pages_map_back_exactly(cwd: Path) -> None:
    pages = ["Page one talks about Mercury.", "Page two is about Venus.", "Page three covers Earth."]
    make_pdf(cwd / "docs/solar.pdf", pages, title="Solar Notes")
    doc = only_doc("docs/solar.pdf")
    assert doc.text == "\n\n".join(pages)
    assert doc.id == doc.source == "docs/solar.pdf"
    assert doc.metadata["title"] == "Solar Notes"
    assert doc.metadata["file_type"] == "pdf"
    assert doc.metadata["pages"] == [
        {"page": 1, "start": 0, "end": 29},
        {"page": 2, "start": 31, "end": 55},
        {"page": 3, "start": 57, "end": 81},
    ]
    for entry, expected in zip(doc.metadata["pages"], pages, strict=True):
        assert doc.text[entry["start"] : entry["end"]] == expected


def test_pdf_blank_page_gets_no_range(cwd: Path) -> None:
    make_pdf(cwd / "gap.pdf", ["First page.", "", "Third page."])
    doc = only_doc("gap.pdf")
    assert doc.text == "First page.\n\nThird page."
    assert doc.metadata["pages"] == [{"page": 1, "start": 0, "end": 11}, {"page": 3, "start": 13, "end": 24}]
    assert doc.metadata["page_count"] == 3
    assert "title" not in doc.metadata


def test_pdf_without_text_is_a_failure(cwd: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)  # a drawing, like a scan: no text objects
    pdf.output("scan.pdf")
    assert only_failure("scan.pdf") == "no extractable text (scanned PDF? OCR is not supported)"


def test_corrupt_pdfs_are_failures_with_pypdf_reason(cwd: Path) -> None:
    write("junk.pdf", b"this is not a pdf")
    reason = only_failure("junk.pdf")
    assert reason.startswith("corrupt or unreadable PDF: ")
    assert "invalid pdf header" in reason
    full = make_pdf(cwd / "full.pdf", ["Some text."]).read_bytes()
    write("truncated.pdf", full[: len(full) // 3])
    assert only_failure("truncated.pdf").startswith("corrupt or unreadable PDF: ")


def test_encrypted_pdf(cwd: Path) -> None:
    make_pdf(cwd / "locked.pdf", ["secret"], owner_password="owner", user_password="user")
    assert "needs a password" in only_failure("locked.pdf")
    # An empty user password opens with "": that one loads.
    make_pdf(cwd / "open.pdf", ["open text"], owner_password="owner")
    assert only_doc("open.pdf").text == "open text"


# --- JSONL ---------------------------------------------------------------------------------


def test_jsonl_rows(cwd: Path) -> None:
    rows = [
        {"id": "a1", "text": "Alpha text", "title": "Alpha", "lang": "en", "tags": ["x", "y"]},
        {"id": 7, "text": "Seven"},
        {"text": "No id here", "score": 1.5},
    ]
    write("rows.jsonl", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    loaded = load_file(Path("rows.jsonl"), CONFIG)
    assert loaded.failures == []
    assert [(d.id, d.source, d.text) for d in loaded.documents] == [
        ("rows.jsonl#a1", "rows.jsonl", "Alpha text"),
        ("rows.jsonl#7", "rows.jsonl", "Seven"),
        ("rows.jsonl#4", "rows.jsonl", "No id here"),  # line 4: the blank line 3 still counts
    ]
    first, second, third = (d.metadata for d in loaded.documents)
    assert first == {
        "title": "Alpha",
        "lang": "en",
        "tags": ["x", "y"],
        "row_id": "a1",
        "line": 1,
        "file_type": "jsonl",
        "path": "rows.jsonl",
    }
    assert second == {"row_id": "7", "line": 2, "file_type": "jsonl", "path": "rows.jsonl"}
    assert third["score"] == 1.5 and third["row_id"] == "4" and third["line"] == 4


def test_jsonl_bad_rows_fail_alone(cwd: Path) -> None:
    lines = [
        '{"id": "r1", "text": "one"}',
        '{"id": "r2", "text": "two"',  # truncated
        '{"id": "r3", "body": "no text field"}',
        '["not", "an", "object"]',
        '{"id": "r1", "text": "duplicate id"}',
        '{"id": "r6", "text": "   "}',
        '{"id": "r7", "text": {"nested": true}}',
        '{"id": "r8", "text": "eight"}',
    ]
    latin1_line = b'{"id": "r9", "text": "caf\xe9"}\n'
    data = ("\n".join(lines) + "\n").encode() + latin1_line + b'{"id": "r10", "text": "ten"}'
    write("mixed.jsonl", data)
    loaded = load_file(Path("mixed.jsonl"), CONFIG)
    assert [d.id for d in loaded.documents] == ["mixed.jsonl#r1", "mixed.jsonl#r8", "mixed.jsonl#r10"]
    reasons = {f.path: f.reason for f in loaded.failures}
    assert list(reasons) == [f"mixed.jsonl:{n}" for n in (2, 3, 4, 5, 6, 7, 9)]
    assert reasons["mixed.jsonl:2"].startswith("invalid JSON: ")
    assert reasons["mixed.jsonl:3"] == "missing text field 'text' (fields present: 'id', 'body')"
    assert reasons["mixed.jsonl:4"] == "expected a JSON object, got a JSON list"
    assert reasons["mixed.jsonl:5"].startswith("duplicate id 'r1' (first used on line 1)")
    assert reasons["mixed.jsonl:6"] == "empty text field 'text'"
    assert reasons["mixed.jsonl:7"] == "text field 'text' is a JSON dict, expected a string"
    assert reasons["mixed.jsonl:9"].startswith("invalid UTF-8")
    # The strict per-format API refuses the whole file instead of dropping rows silently.
    with pytest.raises(LoaderError, match=r"7 bad row\(s\); first at mixed.jsonl:2: invalid JSON"):
        jsonl_loader.load(Path("mixed.jsonl"), CONFIG)


def test_jsonl_config_fields(cwd: Path) -> None:
    write("qa.jsonl", json.dumps({"qid": 3, "q": "Why?", "a": "", "b": "Because.", "src": "wiki", "x": 1}))
    config = LoaderConfig(
        jsonl=TabularConfig(
            text_fields=["q", "a", "b"], id_field="qid", metadata_fields=["src"], title_field="q"
        )
    )
    doc = only_doc("qa.jsonl", config)
    assert doc.id == "qa.jsonl#3"
    assert doc.text == "Why?\n\nBecause."  # the empty field is skipped
    assert doc.metadata == {
        "src": "wiki",
        "title": "Why?",
        "row_id": "3",
        "line": 1,
        "file_type": "jsonl",
        "path": "qa.jsonl",
    }


def test_jsonl_empty_file(cwd: Path) -> None:
    write("none.jsonl", "\n\n  \n")
    assert only_failure("none.jsonl") == "empty file"


# --- CSV -----------------------------------------------------------------------------------


def test_csv_rows_with_multiline_cells(cwd: Path) -> None:
    write(
        "t.csv",
        'id,title,text,lang\r\n'
        'a,First,"Line one\r\nline two",en\r\n'
        ',Second,Plain,fr\r\n'
        'c,,"Third ""quoted""",\r\n',
    )
    loaded = load_file(Path("t.csv"), CONFIG)
    assert loaded.failures == []
    assert [(d.id, d.text) for d in loaded.documents] == [
        ("t.csv#a", "Line one\nline two"),
        ("t.csv#4", "Plain"),  # no id: the record's starting line
        ("t.csv#c", 'Third "quoted"'),
    ]
    assert [d.metadata["line"] for d in loaded.documents] == [2, 4, 5]
    assert loaded.documents[0].metadata == {
        "title": "First",
        "lang": "en",
        "row_id": "a",
        "line": 2,
        "file_type": "csv",
        "path": "t.csv",
    }
    assert "title" in loaded.documents[2].metadata and loaded.documents[2].metadata["title"] == ""


def test_csv_unknown_text_column_is_a_file_failure(cwd: Path) -> None:
    write("bad.csv", "id,body\n1,hello\n")
    reason = only_failure("bad.csv")
    assert reason.startswith("text column 'text' not in the header; columns present: 'id', 'body'.")
    assert "loader.csv.text_fields" in reason


def test_csv_bad_rows_fail_alone(cwd: Path) -> None:
    write("rows.csv", "id,text\n1,good\n2,too,many,fields\n3,\n1,dup\n5,fine\n")
    loaded = load_file(Path("rows.csv"), CONFIG)
    assert [d.id for d in loaded.documents] == ["rows.csv#1", "rows.csv#5"]
    reasons = {f.path: f.reason for f in loaded.failures}
    assert list(reasons) == ["rows.csv:3", "rows.csv:4", "rows.csv:5"]
    assert reasons["rows.csv:3"].startswith("row has 4 fields but the header has 2")
    assert reasons["rows.csv:4"] == "empty text field 'text'"
    assert reasons["rows.csv:5"].startswith("duplicate id '1' (first used on line 2)")
    with pytest.raises(LoaderError, match="3 bad row"):
        csv_loader.load(Path("rows.csv"), CONFIG)


def test_csv_cp1252_and_config(cwd: Path) -> None:
    write("x.csv", "name,note\nZoë,“smart” quotes\n".encode("cp1252"))
    config = LoaderConfig(csv=TabularConfig(text_fields=["note"], id_field="name", title_field=None))
    doc = only_doc("x.csv", config)
    assert doc.id == "x.csv#Zoë"
    assert doc.text == "“smart” quotes"
    assert doc.metadata == {
        "encoding": "cp1252",
        "row_id": "Zoë",
        "line": 2,
        "file_type": "csv",
        "path": "x.csv",
    }


# --- DOCX ----------------------------------------------------------------------------------


def test_docx_paragraphs_headings_and_tables(cwd: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Mission Report", 0)  # style "Title"
    document.add_heading("Intro", 1)
    document.add_paragraph("First paragraph.")
    document.add_paragraph("   ")
    document.add_heading("Details", 2)
    document.add_paragraph("Second paragraph.")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Mass"
    table.cell(0, 1).text = "5 kg"
    document.add_paragraph("After the table.")
    document.save("report.docx")

    doc = only_doc("report.docx")
    assert doc.text == (
        "Mission Report\n\nIntro\n\nFirst paragraph.\n\nDetails\n\nSecond paragraph.\n\n"
        "Mass | 5 kg\n\nAfter the table."
    )
    assert doc.metadata == {
        "headings": [
            {"level": 1, "text": "Intro", "start": 16},
            {"level": 2, "text": "Details", "start": 41},
        ],
        "title": "Mission Report",
        "file_type": "docx",
        "path": "report.docx",
    }
    for heading in doc.metadata["headings"]:
        assert doc.text[heading["start"] :].startswith(heading["text"])


def test_corrupt_and_empty_docx(cwd: Path) -> None:
    import docx

    write("broken.docx", b"PK\x03\x04 this is not really a zip")
    assert only_failure("broken.docx") == "corrupt or unreadable .docx: File is not a zip file"
    docx.Document().save("empty.docx")
    assert only_failure("empty.docx").startswith("empty document")


# --- load_file: common failures ------------------------------------------------------------


def test_file_over_size_limit(cwd: Path) -> None:
    write("big.txt", "x" * 3 * 1024 * 1024)
    reason = only_failure("big.txt", LoaderConfig(max_file_mb=1))
    assert reason == "file is 3.0 MB, over the limit loader.max_file_mb = 1; raise that setting to load it"
    assert only_doc("big.txt", LoaderConfig(max_file_mb=4)).text == "x" * 3 * 1024 * 1024


def test_load_file_missing_unsupported_and_directory(cwd: Path) -> None:
    assert only_failure("nope.txt") == "no such file or directory"
    write("data.xyz", "stuff")
    assert only_failure("data.xyz").startswith("unsupported file type '.xyz' (supported: .csv, .docx,")
    os.mkdir("folder.md")
    assert only_failure("folder.md").startswith("not a regular file")


def test_load_file_never_raises_on_loader_bugs(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(path: Path, config: LoaderConfig) -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(text_loader, "load", explode)
    write("a.txt", "fine")
    assert only_failure("a.txt") == "unexpected error while reading the file (RuntimeError: boom)"


def test_unreadable_file(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write("secret.txt", "hidden")
    if os.geteuid() == 0:
        # root reads through chmod 000: simulate the permission error instead.
        real_read = pathlib.Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self.name == "secret.txt":
                raise PermissionError(13, "Permission denied")
            return real_read(self)

        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
        assert only_failure("secret.txt") == "permission denied (cannot read the file)"
    else:
        path.chmod(0)
        try:
            report = load_paths(["secret.txt"], CONFIG)
            assert report.failures[0].path == "secret.txt"
            assert report.failures[0].reason.startswith("permission denied")
        finally:
            path.chmod(0o644)


# --- discovery -----------------------------------------------------------------------------


@pytest.fixture
def tree(cwd: Path) -> Path:
    for name in [
        "data/a.md",
        "data/b.txt",
        "data/sub/c.html",
        "data/sub/deep/d.md",
        "data/.hidden.md",
        "data/.git/config.txt",
        "data/sub/.cache/e.txt",
    ]:
        write(name, f"# {name}\n\ncontent of {name}\n")
    write("data/x.xyz", "unsupported")
    write("data/sub/noext", "unsupported")
    return cwd / "data"


def paths(found) -> list[str]:
    return [p.as_posix() for p in found.files]


def test_discover_relative_sorted_and_skips(tree: Path) -> None:
    found = discover(["data"], CONFIG)
    assert paths(found) == ["data/a.md", "data/b.txt", "data/sub/c.html", "data/sub/deep/d.md"]
    assert all(isinstance(p, Path) for p in found.files)
    assert found.failures == []
    assert [(s.path, s.reason) for s in found.skipped] == [
        ("data/sub/noext", "unsupported file type (no extension)"),
        ("data/x.xyz", "unsupported file type '.xyz'"),
    ]


def test_discover_deduplicates_and_keeps_user_form(tree: Path) -> None:
    found = discover(["data/sub", "./data", "data/a.md", "data/"], CONFIG)
    assert paths(found) == ["data/a.md", "data/b.txt", "data/sub/c.html", "data/sub/deep/d.md"]
    absolute = discover([tree / "sub"], CONFIG)
    assert paths(absolute) == [(tree / "sub/c.html").as_posix(), (tree / "sub/deep/d.md").as_posix()]
    dot = discover(["."], LoaderConfig(include=["data/sub/**"]))
    assert paths(dot) == ["data/sub/c.html", "data/sub/deep/d.md"]


def test_explicit_files(tree: Path) -> None:
    found = discover(["data/x.xyz", "data/.hidden.md", "missing/thing.md"], CONFIG)
    assert paths(found) == ["data/.hidden.md"]  # named explicitly: exclude does not apply
    assert [(f.path, f.reason.split(" (")[0]) for f in found.failures] == [
        ("data/x.xyz", "unsupported file type '.xyz'"),
        ("missing/thing.md", "no such file or directory"),
    ]
    assert found.skipped == []


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["**/*.md"], [], ["data/.hidden.md", "data/a.md", "data/sub/deep/d.md"]),
        (["*.md"], [], ["data/.hidden.md", "data/a.md"]),  # `*` does not cross `/`
        (["sub/**"], ["**/.*", "**/.*/**"], ["data/sub/c.html", "data/sub/deep/d.md"]),
        (["**/*"], ["sub/**", "**/.*", "**/.*/**"], ["data/a.md", "data/b.txt"]),
        (["**/*.md"], ["**/d.md", "**/.*"], ["data/a.md"]),  # exclude wins over include
        (["sub/*/*.md"], [], ["data/sub/deep/d.md"]),
        (["**/.*/**"], [], ["data/.git/config.txt", "data/sub/.cache/e.txt"]),
    ],
)
def test_include_exclude(tree: Path, include: list[str], exclude: list[str], expected: list[str]) -> None:
    found = discover(["data"], LoaderConfig(include=include, exclude=exclude))
    assert paths(found) == expected
    assert found.failures == []


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("*.md", "x/a.md", False),
        ("a/**/b.txt", "a/b.txt", True),
        ("a/**/b.txt", "a/x/y/b.txt", True),
        ("a/**", "a/x/y", True),
        ("a/**", "ab/x", False),
        ("**/.*", ".env", True),
        ("**/.*/**", "x/.git/objects/1", True),
        ("doc?.txt", "doc1.txt", True),
        ("doc?.txt", "doc/.txt", False),
        ("[!a]*.md", "b.md", True),
        ("[!a]*.md", "a.md", False),
        ("notes/", "notes/x/y.md", True),
        ("file[.txt", "file[.txt", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches


def test_ragkitignore(cwd: Path) -> None:
    for name in [
        "kb/top.md",
        "kb/keep.txt",
        "kb/notes.txt",
        "kb/secret.md",
        "kb/drafts/d1.md",
        "kb/sub/top.md",
        "kb/sub/notes.txt",
        "kb/sub/secret.md",
        "kb/sub/drafts.md",
        "kb/sub/inner/secret.md",
    ]:
        write(name, f"text of {name}")
    write("kb/.ragkitignore", "# comment\n\n*.txt\n!keep.txt\ndrafts/\n/top.md\n")
    write("kb/sub/.ragkitignore", "inner/secret.md\n")
    found = discover(["kb"], CONFIG)
    assert paths(found) == [
        "kb/keep.txt",  # re-included by the later `!keep.txt`
        "kb/secret.md",  # the sub/ ignore file only applies below sub/
        "kb/sub/drafts.md",  # `drafts/` matches directories only
        "kb/sub/secret.md",
        "kb/sub/top.md",  # `/top.md` is anchored to kb/
    ]
    # Ignored files are silently left out: neither failures nor skipped.
    assert found.failures == [] and found.skipped == []
    # The ignore file itself is never content, even without the dotfile exclude.
    found = discover(["kb"], LoaderConfig(exclude=[]))
    assert "kb/keep.txt" in paths(found)
    assert found.failures == [] and found.skipped == []


def test_symlink_outside_root(cwd: Path) -> None:
    write("outside/secret.md", "# Outside\n")
    write("root/inside.md", "# Inside\n")
    os.symlink(cwd / "outside/secret.md", "root/link.md")
    os.symlink(cwd / "outside", "root/linkdir")
    found = discover(["root"], CONFIG)
    assert paths(found) == ["root/inside.md"]
    reasons = {f.path: f.reason for f in found.failures}
    assert set(reasons) == {"root/link.md", "root/linkdir"}
    real = os.path.realpath(cwd / "outside")
    assert reasons["root/linkdir"] == (
        f"symlink to '{real}' leads outside 'root'; not followed "
        "(set loader.follow_symlinks: true to follow it)"
    )
    followed = discover(["root"], LoaderConfig(follow_symlinks=True))
    assert paths(followed) == ["root/inside.md", "root/link.md"]  # linkdir/secret.md is the same file
    assert followed.failures == []
    report = load_paths(["root"], LoaderConfig(follow_symlinks=True))
    assert [d.source for d in report.documents] == ["root/inside.md", "root/link.md"]


def test_symlink_inside_root_prefers_real_path(cwd: Path) -> None:
    write("r/real/a.md", "# A\n")
    os.symlink("real", "r/alias")  # "alias" sorts before "real"
    os.symlink("real/a.md", "r/0-link.md")
    found = discover(["r"], CONFIG)
    assert paths(found) == ["r/real/a.md"]
    assert found.failures == []


def test_symlink_loops_terminate_and_are_reported(cwd: Path) -> None:
    write("loop/a.md", "# A\n")
    write("loop/x/b.md", "# B\n")
    write("loop/y/c.md", "# C\n")
    os.symlink("..", "loop/x/up")  # points back at an ancestor
    os.symlink("../y", "loop/x/to_y")  # x/to_y -> y, y/to_x -> x: a cycle through two links
    os.symlink("../x", "loop/y/to_x")
    os.symlink("self.md", "loop/self.md")  # a link to itself
    found = discover(["loop"], CONFIG)
    assert paths(found) == ["loop/a.md", "loop/x/b.md", "loop/y/c.md"]
    reasons = {f.path: f.reason for f in found.failures}
    loop_dir = os.path.realpath(cwd / "loop")
    assert reasons["loop/x/up"] == (
        f"symlink loop: it leads back to '{loop_dir}', which contains it; not followed"
    )
    assert reasons["loop/self.md"].startswith("symlink loop")
    # The two-link cycle (x/to_y/to_x -> x) is cut where it closes.
    x_dir = os.path.realpath(cwd / "loop/x")
    assert reasons["loop/x/to_y/to_x"] == (
        f"symlink loop: it leads back to '{x_dir}', which contains it; not followed"
    )
    assert len(reasons) == 3


def test_broken_symlink(cwd: Path) -> None:
    write("b/ok.md", "# ok\n")
    os.symlink("gone.md", "b/dangling.md")
    found = discover(["b", "b/dangling.md"], CONFIG)
    assert paths(found) == ["b/ok.md"]
    assert [(f.path, f.reason) for f in found.failures] == [
        ("b/dangling.md", "broken symlink: target 'gone.md' does not exist")
    ]


def test_missing_path_and_unreadable_dir(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write("d/ok.md", "# ok\n")
    write("d/locked/x.md", "# x\n")
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(["d", "nowhere"], CONFIG)
    assert paths(found) == ["d/ok.md"]
    assert [(f.path, f.reason) for f in found.failures] == [
        ("d/locked", "permission denied (cannot list the directory)"),
        ("nowhere", "no such file or directory"),
    ]


# --- load_paths ----------------------------------------------------------------------------


def test_load_paths_reports_failures_and_loads_the_rest(cwd: Path) -> None:
    write("kb/good.md", "# Good\n\nfine\n")
    write("kb/empty.txt", "")
    write("kb/binary.txt", b"\x00\x01\x02")
    write("kb/rows.jsonl", '{"id": 1, "text": "one"}\nnot json\n{"id": 3, "text": "three"}\n')
    write("kb/junk.pdf", b"%PDF-1.4 nonsense")
    write("kb/image.png", b"\x89PNG")
    report = load_paths(["kb", "kb/missing.md"], CONFIG)
    assert [d.id for d in report.documents] == ["kb/good.md", "kb/rows.jsonl#1", "kb/rows.jsonl#3"]
    assert report.files_ok == 2
    assert [f.path for f in report.failures] == [
        "kb/missing.md",
        "kb/binary.txt",
        "kb/empty.txt",
        "kb/junk.pdf",
        "kb/rows.jsonl:2",
    ]
    assert report.failures[-1].reason.startswith("invalid JSON: ")
    assert [(s.path, s.reason) for s in report.skipped] == [("kb/image.png", "unsupported file type '.png'")]
