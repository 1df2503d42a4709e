"""The documentation site builds with ``mkdocs build --strict``.

Strict mode fails on any warning: a broken link between pages, a page missing from the nav, an API
name that mkdocstrings cannot resolve, or a CLI help block the build could not produce. The build
writes into a temporary folder, never into the repository.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed: pip install 'xcf[docs]' (make test installs it)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    if proc.returncode != 0:
        print(proc.stdout)
        print(proc.stderr)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    return out


def test_site_builds_strict(site: Path) -> None:
    for page in ("index.html", "getting-started/index.html", "concepts/methods/index.html",
                 "reference/api/index.html", "cli/index.html", "results/index.html"):
        assert (site / page).is_file(), page


def _headings(html: str) -> set[str]:
    """The text of every mkdocstrings object heading of a page."""
    found = re.findall(r'class="doc doc-heading">(.*?)</h\d>', html, flags=re.S)
    return {re.sub(r"<[^>]+>|&para;", " ", h).split()[0] for h in found if re.sub(r"<[^>]+>", "", h).split()}


def test_api_reference_renders_the_public_names(site: Path) -> None:
    api = _headings((site / "reference" / "api" / "index.html").read_text(encoding="utf-8"))
    for name in ("xcf.explain", "xcf.Explainer", "xcf.ExplainConfig", "xcf.Counterfactual",
                 "xcf.load_pack", "xcf.list_packs", "xcf.list_components", "xcf.create"):
        assert name in api, (name, sorted(api))
    methods = _headings((site / "reference" / "methods" / "index.html").read_text(encoding="utf-8"))
    for name in ("Method", "Objective", "Region", "Blend", "StopRule", "list_methods", "get_method"):
        assert name in methods, (name, sorted(methods))


def test_cli_reference_holds_the_real_help(site: Path) -> None:
    html = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("explain", "explain-dataset", "demo", "plugins", "packs", "train", "bench"):
        assert f"usage: xcf {command}" in html, command
    assert "xcf-help:" not in html  # every marker was replaced
