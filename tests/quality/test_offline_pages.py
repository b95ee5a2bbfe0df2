"""Data Docs and the run report open offline: vendored assets, rewritten pages, checked in headless Chromium.

The browser checks drive the system Chromium (/usr/bin/chromium; CI installs it with apt)
through the ``playwright`` package, never a downloaded browser. The browser context is put
offline and every request it makes is recorded: only file:// URLs may appear.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from clinlake.pipelines.quality import gx as gx_glue
from clinlake.pipelines.quality.offline_docs import (
    ASSETS_DIR, SITE_VENDOR_DIR, VENDORED, OfflineDocsError, local_target, make_site_offline, off_site_references,
    rewrite_page,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Recursive globs in package_data are read by setuptools >= 62.3 (setup.py).
SETUP = Path(__file__).resolve().parents[2] / "setup.py"


# --- the vendored files -----------------------------------------------------------------


def test_vendored_files_match_their_checksums_and_each_package_has_a_licence():
    sums = dict(reversed(line.split(None, 1)) for line in (ASSETS_DIR / "SHA256SUMS").read_text().splitlines())
    sums = {name.strip(): digest for name, digest in sums.items()}
    on_disk = {p.relative_to(ASSETS_DIR).as_posix() for p in ASSETS_DIR.rglob("*")
               if p.is_file() and len(p.relative_to(ASSETS_DIR).parts) > 1}
    assert set(sums) == on_disk  # nothing unlisted, nothing missing
    for name, digest in sums.items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == digest, name
    packages = {re.match(r"(@[^/]+/)?[^/]+", name).group(0) for name in sums}
    assert len(packages) == 11
    for package in packages:
        assert any((ASSETS_DIR / package / n).is_file() for n in ("LICENSE", "LICENSE.txt")), package
    assert set(VENDORED.values()) <= set(sums)
    total = sum((ASSETS_DIR / name).stat().st_size for name in sums)
    assert total < 2_500_000, total  # minified builds, woff2 fonts only
    readme = (ASSETS_DIR / "README.md").read_text()
    for package in packages:  # one README row per package: name, version, licence
        name, version = package.rsplit("@", 1)
        assert f"| `{name}` | {version} |" in readme, package
    assert '"data_docs_assets/**/*"' in SETUP.read_text()


def test_vendored_css_points_only_at_vendored_files():
    missing = []
    for css in ASSETS_DIR.rglob("*.css"):
        for url in re.findall(r"""url\(\s*["']?([^"')]+)""", css.read_text(encoding="utf-8")):
            if url.startswith("data:"):
                continue
            assert not re.match(r"(https?:)?//", url), (css.name, url)
            if not (css.parent / url).resolve().is_file():
                missing.append(Path(url).name)
    # Font Awesome's .ttf fallbacks stay behind: Chromium (and every browser Bootstrap 4 runs in) takes the woff2.
    assert sorted(set(missing)) == ["fa-brands-400.ttf", "fa-regular-400.ttf", "fa-solid-900.ttf",
                               "fa-v4compatibility.ttf"]


def test_every_cdn_file_of_the_gx_templates_has_a_vendored_copy():
    """A GX upgrade that links a new CDN file must fail here, not render unstyled offline."""
    import great_expectations

    view = Path(great_expectations.__file__).parent / "render" / "view"
    urls = set()
    for template in (view / "templates").glob("*.j2"):
        urls |= set(off_site_references(template.read_text(encoding="utf-8")))
    for css in (view / "static" / "styles").glob("*.css"):
        urls |= {u for u in re.findall(r"""url\(\s*["']?([^"')]+)""", css.read_text()) if u.startswith("http")}
    assert len(urls) >= 16
    assert [u for u in sorted(urls) if local_target(u) is None] == []
    # The logo's URL is built in the template (no literal in a tag): its host is mapped too.
    assert local_target("https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1") \
        == "static/images/logo-long.png"


def test_rewrite_checks_integrity_and_reports_unknown_urls():
    popper = "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"
    good = (f'<script src="{popper}" integrity="sha384-ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q"'
            ' crossorigin="anonymous"></script><script src="https://cdn.example.org/x.js"></script>'
            '<a href="https://greatexpectations.io">GX</a>')
    unresolved: set[str] = set()
    html, count = rewrite_page(good, "../..", unresolved)
    assert count == 1 and unresolved == {"https://cdn.example.org/x.js"}
    assert f'src="../../{SITE_VENDOR_DIR}/popper.js@1.12.9/dist/umd/popper.min.js"></script>' in html
    assert "integrity" not in html and "crossorigin" not in html  # file:// pages cannot do the CORS SRI needs
    assert 'href="https://greatexpectations.io"' in html  # a link is not a request
    with pytest.raises(OfflineDocsError, match="integrity"):
        rewrite_page(good.replace("sha384-Ap", "sha384-Xp"), ".", set())


def test_make_site_offline_rewrites_nested_pages_once(tmp_path):
    jquery = "https://code.jquery.com/jquery-3.7.1.min.js"
    page = (f'<html><head><script src="{jquery}"></script>'
            '<style>.x{background:url("https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/'
            'full_logo_dark.png")}</style></head><body><img src="https://tracker.example.org/p.gif?id=1">'
            '</body></html>')
    nested = tmp_path / "validations" / "suite" / "run" / "page.html"
    nested.parent.mkdir(parents=True)
    for path in (tmp_path / "index.html", nested):
        path.write_text(page)
    report = make_site_offline(tmp_path)
    assert (report.pages, report.rewritten) == (2, 4)
    assert report.unresolved == {"https://tracker.example.org/p.gif?id=1"}  # kept, and reported
    html = nested.read_text()
    assert '<script src="../../../static/vendor/jquery@3.7.1/dist/jquery.min.js">' in html
    assert "url('../../../static/images/logo-long.png')" in html
    assert off_site_references(html) == ["https://tracker.example.org/p.gif?id=1"]
    assert (tmp_path / SITE_VENDOR_DIR / "jquery@3.7.1" / "dist" / "jquery.min.js").read_bytes() \
        == (ASSETS_DIR / "jquery@3.7.1" / "dist" / "jquery.min.js").read_bytes()
    assert make_site_offline(tmp_path).rewritten == 0  # idempotent: a second build pass changes nothing


# --- real pages in headless Chromium --------------------------------------------------------


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory, sample_notes):
    """A real annotate run (6 sample notes, one failing user expectation, gate in warn mode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clinlake.pipelines.config import parse_config
    from clinlake.pipelines.spark.job import run_annotate

    base = tmp_path_factory.mktemp("offline")
    notes = [n for n in sample_notes if n["transcription"].strip()][:6]
    pq.write_table(pa.table({"id": [n[""] for n in notes], "body": [n["transcription"] for n in notes]}),
                   base / "notes.parquet")
    suite = base / "short_chunks.yaml"
    suite.write_text("suite: short_chunks\ntable: entities\nexpectations:\n"
                     "  - {expectation: expect_column_value_lengths_to_be_between, column: chunk, max_value: 3}\n")
    config = parse_config({"input": {"path": str(base / "notes.parquet"), "id_column": "id", "text_column": "body"},
                           "output": {"path": str(base / "lake")},
                           "quality": {"mode": "warn", "suites": [str(suite)]}})
    summary = run_annotate(spark, config, run_id="offline")
    assert (summary.status, summary.gate_status) == ("succeeded", "failed")
    return summary


@pytest.fixture(scope="module")
def raw_site(spark, tmp_path_factory):
    """Data Docs as GX writes them, without the rewrite: the browser check must catch them."""
    from clinlake.pipelines.quality.gate import validate_tables
    from clinlake.pipelines.quality.suites import parse_suite

    suite = parse_suite({"table": "t", "expectations": [{"expectation": "expect_column_values_to_not_be_null",
                                                          "column": "x"}]}, source="raw")
    frame = spark.createDataFrame([(1,), (None,)], "x int")
    patch = pytest.MonkeyPatch()
    patch.setattr(gx_glue, "_make_docs_offline", lambda site: None)
    try:
        result = validate_tables(spark, {"t": frame}, None, [suite],
                                 context_root=tmp_path_factory.mktemp("raw") / "gx", run_id="raw")
    finally:
        patch.undo()
    assert result.data_docs is not None and result.data_docs.exists()
    return result.data_docs


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as driver:
        # The system Chromium: playwright's own browser downloads are not possible air-gapped.
        # A dead proxy and an empty resolver make sure nothing leaves the machine even if asked.
        # --allow-file-access-from-files: each file:// URL is its own origin, so without it the
        # probe could not count a stylesheet's rules (loading is the same either way).
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
            "--disable-component-update"])
        yield chromium
        chromium.close()


def open_offline(browser, page_path: Path, screenshot: Path) -> tuple[object, list[str], list[str]]:
    """Open ``page_path`` offline; returns (page, every requested URL, failed requests)."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    requests: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(screenshot), full_page=False)
    assert screenshot.stat().st_size > 20_000
    return page, requests, failed


STYLE_PROBE = """() => {
  const sheets = [...document.styleSheets].filter(s => s.href).map(s => {
    let rules = -1; try { rules = s.cssRules.length } catch (e) {}
    return [s.href.split('/').pop(), rules];
  });
  const box = document.querySelector('.container-fluid.pl-5');
  const nav = document.querySelector('nav.navbar');
  return {
    sheets: Object.fromEntries(sheets),
    paddingLeft: box ? getComputedStyle(box).paddingLeft : null,
    navbarDisplay: nav ? getComputedStyle(nav).display : null,
    jquery: typeof window.jQuery, bootstrapTable: typeof (window.jQuery && jQuery.fn.bootstrapTable),
    modal: typeof (window.jQuery && jQuery.fn.modal), vegaEmbed: typeof window.vegaEmbed,
    fontAwesome: [...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded'),
    faIcons: document.querySelectorAll('[class*="fa-"]').length,
  };
}"""


def assert_styled_offline(requests: list[str], failed: list[str], probe: dict) -> None:
    assert [u for u in requests if not u.startswith("file://")] == []
    assert [u for u in failed if "/static/vendor/" in u] == []
    assert probe["sheets"].get("bootstrap.min.css", 0) > 1000  # Bootstrap 4.3.1's rules, loaded
    assert probe["sheets"].get("all.min.css", 0) > 100  # Font Awesome
    assert probe["paddingLeft"] == "48px"  # .pl-5 is Bootstrap's 3rem, not the browser's 0
    assert probe["navbarDisplay"] == "flex"
    assert (probe["jquery"], probe["bootstrapTable"], probe["modal"], probe["vegaEmbed"]) == ("function",) * 4


def test_data_docs_index_and_validation_page_render_offline(browser, run, tmp_path):
    index = Path(run.data_docs)
    site = index.parent
    assert (site / SITE_VENDOR_DIR / "vega@5.33.1" / "LICENSE").is_file()  # licences ship with the site
    [validation] = validations = sorted((site / "validations").rglob("*.html"))
    assert "/validations/short_chunks/offline/" in validation.as_posix()
    for html in [index, *validations]:
        assert off_site_references(html.read_text(encoding="utf-8")) == []
    page, requests, failed = open_offline(browser, index, tmp_path / "data_docs_index.png")
    probe = page.evaluate(STYLE_PROBE)
    assert_styled_offline(requests, failed, probe)
    assert "Showing 1 to 1 of 1 rows" in page.inner_text("body")  # bootstrap-table's JS built the runs table
    assert any(u.endswith("/static/images/logo-long.png") for u in requests)
    page, requests, failed = open_offline(browser, validation, tmp_path / "data_docs_validation.png")
    probe = page.evaluate(STYLE_PROBE)
    assert_styled_offline(requests, failed, probe)
    assert probe["faIcons"] >= 1 and probe["fontAwesome"]  # the pass/fail icons drew from the vendored font
    text = page.inner_text("body")
    assert "less than or equal to 3 characters long" in " ".join(text.split()) and "unexpected values found" in text


def test_raw_gx_pages_fail_the_offline_check(browser, raw_site, tmp_path):
    """The check above is not vacuous: GX's own pages ask CDNs and stay unstyled offline."""
    page, requests, _ = open_offline(browser, raw_site, tmp_path / "raw_index.png")
    probe = page.evaluate(STYLE_PROBE)
    off_site = {re.match(r"https?://[^/]+", u).group(0) for u in requests if not u.startswith("file://")}
    assert {"https://maxcdn.bootstrapcdn.com", "https://code.jquery.com", "https://cdn.jsdelivr.net"} <= off_site
    assert probe["sheets"].get("bootstrap.min.css", -1) <= 0 and probe["paddingLeft"] == "0px"
    with pytest.raises(AssertionError):
        assert_styled_offline(requests, [], probe)


def test_run_report_renders_offline_with_its_charts(browser, run, tmp_path):
    report = Path(run.report_path)
    assert off_site_references(report.read_text(encoding="utf-8")) == []
    page, requests, failed = open_offline(browser, report, tmp_path / "run_report.png")
    assert requests == [report.resolve().as_uri()] and failed == []  # self-contained: one file, nothing else
    boxes = page.evaluate("""() => [...document.querySelectorAll('svg')].map(s => {
        const r = s.getBoundingClientRect(); return [r.width, r.height, s.querySelectorAll('rect').length]; })""")
    assert len(boxes) >= 4
    assert all(w > 50 and h > 20 and rects >= 1 for w, h, rects in boxes), boxes
    # styled by its own inline CSS (14px system-ui), not the browser's default 16px serif
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "14px"
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
    assert page.locator("mark").count() >= 1  # highlighted sample entities
