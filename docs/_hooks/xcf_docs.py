"""MkDocs hook: text the pages take from the code when the site is built, so it cannot drift.

Markers (each alone on a line of a page):

- ``<!-- xcf-help: ARGS -->``: a ``console`` block with what ``xcf ARGS --help`` prints (ARGS may be
  empty for ``xcf --help``), from the installed command's own argparse parsers;
- ``<!-- xcf-method-settings -->``: a table of every setting of the shipped methods
  (:data:`xcf.methods.builtin.BUILTIN`, ``Method.settings()``), one column per method;
- ``<!-- xcf-moved-fields -->``: a table of the names :class:`xcf.ExplainConfig` refuses because a
  method holds them, and where each lives (:data:`xcf.config.MOVED_FIELDS`);
- ``<!-- xcf-include: FILE -->``: the Markdown file FILE of the repository root (e.g. CHANGELOG.md)
  without its first ``# `` title; links relative to the repository, which do not exist on the
  site, become their plain text; a missing file becomes a line naming it.

It also shows the reStructuredText left in docstrings as Sphinx would: a paragraph that ends in
``::`` (announcing a code block) ends in ``:``, and a role (``:class:`~xcf.Foo```, which mkdocstrings
renders as ``:class:<code>~xcf.Foo</code>``) becomes plain code (``Foo``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re

_HELP = re.compile(r"^<!--\s*xcf-help:\s*(?P<args>[a-z0-9 _-]*?)\s*-->[ \t]*$", re.MULTILINE)
_SETTINGS = re.compile(r"^<!--\s*xcf-method-settings\s*-->[ \t]*$", re.MULTILINE)
_MOVED = re.compile(r"^<!--\s*xcf-moved-fields\s*-->[ \t]*$", re.MULTILINE)
_INCLUDE = re.compile(r"^<!--\s*xcf-include:\s*(?P<file>[A-Za-z0-9_.-]+)\s*-->[ \t]*$", re.MULTILINE)
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(?P<tilde>~?)(?P<name>[^<]*)</code>")
_HELP_CACHE: dict[str, str] = {}
_WIDTH = "100"


def _help_text(args: str) -> str:
    """What ``xcf ARGS --help`` prints (stdout), run in this process."""
    if args not in _HELP_CACHE:
        from xcf.cli import main

        out = io.StringIO()
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = _WIDTH
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([*args.split(), "--help"])
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old
        text = out.getvalue().rstrip()
        if not text.startswith("usage:"):
            raise RuntimeError(f"`xcf {args} --help` printed no usage text: {text[:200]!r}")
        _HELP_CACHE[args] = text
    return _HELP_CACHE[args]


def _help_block(match: re.Match) -> str:
    args = " ".join(match.group("args").split())
    command = " ".join(["xcf", args, "--help"]).replace("  ", " ")
    return f"```console\n$ {command}\n{_help_text(args)}\n```"


def _cell(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        if value and abs(value) >= 1e4:  # 1e5, not 100000
            mantissa, exp = f"{value:e}".split("e")
            return f"{float(mantissa):g}e{int(exp)}"
        return f"{value:g}"
    return "–" if value is None else str(value)


def _settings_table(_match: re.Match) -> str:
    from xcf.methods.builtin import BUILTIN

    settings = [m.settings() for m in BUILTIN]
    keys: list[str] = []
    for s in settings:
        keys += [k for k in s if k != "method" and k not in keys]
    head = "| setting | " + " | ".join(f"`{m.name}`" for m in BUILTIN) + " |"
    rule = "|---" * (len(BUILTIN) + 1) + "|"
    rows = [f"| `{k}` | " + " | ".join(_cell(s[k]) if k in s else "" for s in settings) + " |"
            for k in keys]
    return "\n".join([head, rule, *rows])


def _moved_table(_match: re.Match) -> str:
    from xcf.config import MOVED_FIELDS

    rows = [f"| `{name}` | {where.replace('|', '/')} |" for name, where in MOVED_FIELDS.items()]
    return "\n".join(["| name | where it lives |", "|---|---|", *rows])


def _include(match: re.Match, root: str) -> str:
    name = match.group("file")
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        return f"See `{name}` in the repository."
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    text = re.sub(r"\A\s*# [^\n]*\n", "", text, count=1)

    def link(m: re.Match) -> str:
        target = m.group("target")
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # http:, https:, mailto:, an anchor
            return m.group(0)
        return m.group("text")

    return _LINK.sub(link, text).strip()


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs signature)
    """Replace the markers of a page by the text taken from the code."""
    root = os.path.dirname(os.path.abspath(config["docs_dir"]))  # the repository root
    markdown = _INCLUDE.sub(lambda m: _include(m, root), markdown)
    markdown = _HELP.sub(_help_block, markdown)
    markdown = _SETTINGS.sub(_settings_table, markdown)
    return _MOVED.sub(_moved_table, markdown)


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs signature)
    """Show Sphinx roles from docstrings as plain code (``~a.b.C`` as ``C``), and ``name::`` before
    a code block as ``name:``."""

    def plain(match: re.Match) -> str:
        name = match.group("name").split(" &lt;", 1)[0]  # "title <target>": the title
        if match.group("tilde"):
            name = name.rsplit(".", 1)[-1]
        return f"<code>{name}</code>"

    html = _ROLE.sub(plain, html)
    return html.replace("::</p>", ":</p>")
