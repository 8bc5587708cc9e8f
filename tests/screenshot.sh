#!/usr/bin/env bash
# The reproduction report as a reader sees it: screenshots of report.html in
# headless Chromium, for a person to look at (not run by CI, which has no
# Chromium; nothing is asserted).
#
#   tests/screenshot.sh DIR [OUT]   DIR holds report.html (from
#                                   `clustermoe reproduce --out DIR`); writes
#                                   OUT-0.png, OUT-1.png, ... (default
#                                   DIR/screenshot), 1200 x 2000 pixels each
#
# Chromium draws at most a window's height, so the page is shot in windows
# of 2000 pixels, each a copy of the page shifted up by the ones before.
set -euo pipefail
dir=$(cd "${1:?usage: tests/screenshot.sh DIR [OUT]}" && pwd)
out=${2:-$dir/screenshot}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) || {
    echo "no Chromium found (Debian: apt-get install chromium)" >&2
    exit 2
}
shoot() { "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars "$@" 2>/dev/null; }
tmp=$(mktemp -d -p "$dir")
trap 'rm -rf "$tmp"' EXIT
# The page's height, written into the DOM by a script and read back.
sed 's#</body>#<script>document.body.dataset.h = document.documentElement.scrollHeight</script></body>#' \
    "$dir/report.html" >"$tmp/measure.html"
height=$(shoot --window-size=1200,2000 --dump-dom "file://$tmp/measure.html" | grep -o 'data-h="[0-9]*"' | grep -o '[0-9]*')
for i in $(seq 0 $(((height - 1) / 2000))); do
    sed "s#<body>#<body style=\"position:relative;top:-$((i * 2000))px\">#" "$dir/report.html" >"$tmp/shot.html"
    shoot --window-size=1200,2000 --screenshot="$out-$i.png" "file://$tmp/shot.html" >/dev/null
    echo "$out-$i.png"
done
