#!/usr/bin/env bash
# Re-fetch the static assets Great Expectations' Data Docs pages load from CDNs, from the
# npm registry, into pipelines/quality/data_docs_assets/ (shipped in the wheel). After a GX
# build, pipelines/quality/offline_docs.py copies them into the Data Docs site and points the
# pages at them, so the pages render offline. Run from anywhere; needs npm, tar, sha256sum.
#
#   infra/vendor_data_docs_assets.sh            # rewrite the folder from npm
#   (cd pipelines/quality/data_docs_assets && sha256sum -c SHA256SUMS)   # check it is untouched
#
# Versions: exactly those GX 1.24's templates name (render/view/templates/page.j2,
# js_script_imports.j2); vega@5 / vega-lite@5 / vega-embed@6 are unpinned there, so the newest
# release of that major line at vendoring time is pinned here. Only the files the pages use.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=pipelines/quality/data_docs_assets

# package@version  then the files taken from the package (paths inside the npm tarball).
ASSETS=(
  "bootstrap@4.3.1 LICENSE dist/css/bootstrap.min.css dist/js/bootstrap.min.js"
  "bootstrap-table@1.19.1 LICENSE dist/bootstrap-table.min.css dist/bootstrap-table.min.js
     dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
  # index_page.j2 links the .min.css, page.j2 the .css of this extension stylesheet (a few hundred bytes each).
  "bootstrap-table@1.19.0 LICENSE dist/extensions/filter-control/bootstrap-table-filter-control.css
     dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
  "bootstrap-datepicker@1.9.0 LICENSE dist/css/bootstrap-datepicker.min.css dist/js/bootstrap-datepicker.min.js"
  # GX links the unminified bootstrap-prefers-dark.css (880 kB); the minified build of the same release is used.
  "@forevolve/bootstrap-dark@1.1.0 LICENSE dist/css/bootstrap-prefers-dark.min.css"
  # woff2 only: every browser that runs Bootstrap 4 reads woff2, so the .ttf fallbacks are never fetched.
  "@fortawesome/fontawesome-free@6.6.0 LICENSE.txt css/all.min.css webfonts/fa-brands-400.woff2
     webfonts/fa-regular-400.woff2 webfonts/fa-solid-900.woff2 webfonts/fa-v4compatibility.woff2"
  "jquery@3.7.1 LICENSE.txt dist/jquery.min.js"
  # popper.js 1.12.9 and vega 5.33.1 ship no licence file on npm: LICENSE.popper.js / LICENSE.vega below.
  "popper.js@1.12.9 dist/umd/popper.min.js"
  "vega@5.33.1 build/vega.min.js"
  "vega-lite@5.23.0 LICENSE build/vega-lite.min.js"
  "vega-embed@6.29.0 LICENSE build/vega-embed.min.js"
)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Keep the hand-written files (README.md, the two licences npm lacks); replace everything else.
find "$DEST" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$DEST"
for entry in "${ASSETS[@]}"; do
  # shellcheck disable=SC2206  # split on spaces and newlines; the entries hold no glob characters
  words=($entry)
  spec=${words[0]}
  tarball=$(cd "$WORK" && npm pack --silent "$spec" | tail -n 1)
  unpacked="$WORK/${tarball%.tgz}"
  mkdir -p "$unpacked" && tar -xzf "$WORK/$tarball" -C "$unpacked"
  for file in "${words[@]:1}"; do
    mkdir -p "$(dirname "$DEST/$spec/$file")"
    cp "$unpacked/package/$file" "$DEST/$spec/$file"
  done
  echo "vendored $spec"
done
cp "$DEST/LICENSE.popper.js" "$DEST/popper.js@1.12.9/LICENSE"
cp "$DEST/LICENSE.vega" "$DEST/vega@5.33.1/LICENSE"

# Checksums of the npm files (not of the hand-written ones at the top of the folder).
(cd "$DEST" && find . -mindepth 2 -type f \
   | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
du -sh "$DEST"
