"""Make Great Expectations Data Docs open offline: CDN links rewritten to vendored copies.

GX 1.24 renders every Data Docs page with ``<link>``/``<script>`` tags pointing at public CDNs
(Bootstrap, jQuery, Popper, bootstrap-table, bootstrap-datepicker, Font Awesome, Vega) and
with GX's logo loaded from S3 (with the data context id in the query string). clinlake runs
air-gapped, where those pages would render unstyled and half-broken, so after GX builds the
site :func:`make_site_offline` copies the npm builds vendored in ``data_docs_assets/`` (see
its README and ``infra/vendor_data_docs_assets.sh``) into ``<site>/static/vendor/`` and points
every page at them by relative paths, so ``index.html`` opened from disk makes no network
request. Navigation links (``<a href>``) are left alone: they only go out when clicked.
"""
from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from clinlake.pipelines.resources import package_resource

#: The vendored npm files (``<package>@<version>/<path in its npm tarball>``), shipped in the wheel.
ASSETS_DIR = package_resource("pipelines/quality/data_docs_assets")
#: Where the vendored files go inside a Data Docs site (beside GX's own ``static/`` files).
SITE_VENDOR_DIR = "static/vendor"

#: Every CDN URL GX 1.24's templates load (page.j2, index_page.j2, page_minimal.j2,
#: js_script_imports.j2) → its vendored copy. Where GX names the unminified build, or an
#: unpinned major (``vega@5``), the copy is the minified build of that release / the newest
#: release of that major at vendoring time (pinned in the vendoring script).
VENDORED: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap@4.3.1/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap@4.3.1/dist/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker@1.9.0/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker@1.9.0/dist/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "@fortawesome/fontawesome-free@6.6.0/css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js@1.12.9/dist/umd/popper.min.js",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/build/vega-embed.min.js",
}

_GX_WEB_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
#: GX's logo, loaded from S3 (a beacon: the URL carries the data context id) → the copy GX
#: itself writes into the site. The dark-mode logo has no local copy in GX; the regular logo
#: stands in (it only shows when the OS asks for a dark theme).
SITE_FILES: dict[str, str] = {
    _GX_WEB_ASSETS + "logo-long.png": "static/images/logo-long.png",
    _GX_WEB_ASSETS + "full_logo_dark.png": "static/images/logo-long.png",
}

# Tags whose src/href the browser fetches while loading the page (not <a>: that is a click away).
_RESOURCE_TAG = re.compile(r"<(?:link|script|img|source|iframe|embed|video|audio|object)\b[^>]*>", re.I)
_URL_ATTR = re.compile(r"""(\s(?:src|href|data)\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
# Subresource-integrity attributes: a file:// page cannot make the CORS request SRI needs,
# so Chromium would refuse the vendored script; the hash is checked here instead.
_SRI_ATTR = re.compile(r"""\s(integrity|crossorigin)(?:\s*=\s*(["'])(.*?)\2)?""", re.I | re.S)
_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.I | re.S)
_STYLE_ATTR = re.compile(r"""(\sstyle\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(.*?)\1\s*\)""", re.I | re.S)
_CSS_IMPORT = re.compile(r"""@import\s+(["'])(.*?)\1""", re.I)
_OFF_SITE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)


class OfflineDocsError(RuntimeError):
    """A vendored file is missing or does not match the integrity hash GX's page pins."""


@dataclass
class OfflineReport:
    """What :func:`make_site_offline` did: pages rewritten, and off-site references left over."""

    pages: int = 0
    rewritten: int = 0
    #: Off-site URLs with no vendored copy (GX added a CDN file): the page still fetches them.
    unresolved: set[str] = field(default_factory=set)


def make_site_offline(site: Path) -> OfflineReport:
    """Copy the vendored assets into the Data Docs ``site`` and rewrite its pages to use them.

    Idempotent (rewritten pages have nothing left to rewrite), so it can follow every build.
    """
    site = Path(site)
    report = OfflineReport()
    _copy_assets(site / SITE_VENDOR_DIR)
    for page in sorted(site.rglob("*.html")):
        depth_prefix = posixpath.relpath(".", page.parent.relative_to(site).as_posix())
        html = page.read_text(encoding="utf-8")
        rewritten, count = rewrite_page(html, depth_prefix, report.unresolved)
        report.pages += 1
        if count:
            page.write_text(rewritten, encoding="utf-8")
            report.rewritten += count
    return report


def rewrite_page(html: str, to_site_root: str, unresolved: set[str]) -> tuple[str, int]:
    """``html`` with off-site resource URLs pointing at local copies, and how many were rewritten.

    ``to_site_root`` is the relative path from the page's folder to the site root (``.``,
    ``../..``). Off-site URLs with no local copy are added to ``unresolved`` and kept.
    """
    count = 0

    def local(url: str) -> str | None:
        nonlocal count
        target = local_target(url)
        if target is None:
            unresolved.add(url.strip())
            return None
        count += 1
        return posixpath.normpath(posixpath.join(to_site_root, target))

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        url_attr = _URL_ATTR.search(text)
        if url_attr is None or not _OFF_SITE.match(url_attr.group(3)):
            return text
        url = url_attr.group(3)
        new = local(url)
        if new is None:
            return text
        _check_integrity(text, url)
        text = text[:url_attr.start(3)] + new + text[url_attr.end(3):]
        return _SRI_ATTR.sub("", text)

    def css(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            url = match.group(2)
            new = local(url) if _OFF_SITE.match(url) else None
            return match.group(0) if new is None else f"url('{new}')"

        for imported in _CSS_IMPORT.finditer(text):  # no GX page has one; report it if one appears
            if _OFF_SITE.match(imported.group(2)):
                unresolved.add(imported.group(2))
        return _CSS_URL.sub(one, text)

    html = _RESOURCE_TAG.sub(tag, html)
    html = _STYLE_BLOCK.sub(lambda m: m.group(1) + css(m.group(2)) + m.group(3), html)
    html = _STYLE_ATTR.sub(lambda m: m.group(1) + m.group(2) + css(m.group(3)) + m.group(2), html)
    return html, count


def local_target(url: str) -> str | None:
    """The site-relative path standing in for an off-site ``url``, or None when there is none.

    The query string and fragment are ignored (GX appends a timestamp and its context id).
    """
    bare = re.split(r"[?#]", url.strip(), maxsplit=1)[0]
    if bare.startswith("//"):
        bare = "https:" + bare
    if bare.startswith("http://"):
        bare = "https://" + bare[len("http://"):]
    if bare in VENDORED:
        return f"{SITE_VENDOR_DIR}/{VENDORED[bare]}"
    return SITE_FILES.get(bare)


def off_site_references(html: str) -> list[str]:
    """Every off-site URL the browser would fetch while loading ``html`` (resource tags, CSS)."""
    found: list[str] = []
    for tag in _RESOURCE_TAG.finditer(html):
        attr = _URL_ATTR.search(tag.group(0))
        if attr and _OFF_SITE.match(attr.group(3)):
            found.append(attr.group(3))
    styles = [m.group(2) for m in _STYLE_BLOCK.finditer(html)] + [m.group(3) for m in _STYLE_ATTR.finditer(html)]
    for style in styles:
        found += [m.group(2) for m in _CSS_URL.finditer(style) if _OFF_SITE.match(m.group(2))]
        found += [m.group(2) for m in _CSS_IMPORT.finditer(style) if _OFF_SITE.match(m.group(2))]
    return found


def _copy_assets(target: Path) -> None:
    if not ASSETS_DIR.is_dir():
        raise OfflineDocsError(f"vendored Data Docs assets missing: {ASSETS_DIR} (infra/vendor_data_docs_assets.sh)")
    # The licence files and README travel with the assets: the site is what gets shared.
    shutil.copytree(ASSETS_DIR, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))


def _check_integrity(tag: str, url: str) -> None:
    """Fail when GX pins a hash (``integrity=``) that the vendored copy does not have."""
    sri = next((m.group(3) for m in _SRI_ATTR.finditer(tag) if m.group(1).lower() == "integrity"), None)
    if not sri:
        return
    vendored = VENDORED.get(re.split(r"[?#]", url.strip(), maxsplit=1)[0])
    if vendored is None:
        return
    data = (ASSETS_DIR / vendored).read_bytes()
    for token in sri.split():
        algorithm, _, expected = token.partition("-")
        if algorithm in ("sha256", "sha384", "sha512"):
            actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if actual == expected:
                return
    raise OfflineDocsError(f"vendored {vendored} does not match the integrity hash GX pins for {url}")
