#!/usr/bin/env bash
# Regenerate the figures and table in docs/ from the built-in default suite:
#   docs/default_table.md   test accuracy and the first/last-layer gradient ratio, pivoted
#   docs/heatmap.png        per-layer gradient norms of the sigmoid net under plain SGD (seed 0)
#   docs/depth_profile.png  gradient norm against depth, start and end of training, per
#                           activation and init (plain SGD, lr 0.1, no clipping)
#   docs/curves.png         the training loss of every configuration (gradbench plot curves)
#   docs/report_html.png    the top of the HTML report, rendered by headless Chromium (skipped,
#                           with a note, where Chromium is not installed)
# Usage: scripts/default_report.sh [DB]   (default DB: /tmp/gradbench-default.db)
# The run resumes: with the suite already stored it trains nothing (about a minute otherwise,
# on two CPU cores). Everything after it reads the store only.
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-/tmp/gradbench-default.db}
gradbench=${GRADBENCH:-gradbench}

$gradbench run --db "$db" --no-progress > /dev/null

pivot=(--db "$db" --rows optimizer,lr,clip --columns activation,init)
table=$(mktemp docs/.default_table.md.XXXXXX)
trap 'rm -f "$table"' EXIT
{
    echo "# The default suite, pivoted"
    echo
    echo "Made by \`scripts/default_report.sh\` from \`gradbench run\` (the built-in suite: mnist1d_mlp[depth=8,width=64], 2 seeds)."
    echo
    echo "## Test accuracy"
    echo
    $gradbench report "${pivot[@]}" --metric test_accuracy
    echo
    echo "## First/last-layer gradient ratio (early in training; far below 1: vanishing)"
    echo
    $gradbench report "${pivot[@]}" --metric grad_ratio
} > "$table"
chmod 644 "$table"
mv "$table" docs/default_table.md

$gradbench plot heatmap --db "$db" -o docs/heatmap.png \
    --where optimizer=sgd --where activation=sigmoid --where clip=none --where seed=0
$gradbench plot depth --db "$db" -o docs/depth_profile.png \
    --where optimizer=sgd --where lr=0.1 --where clip=none --by activation,init
$gradbench plot curves --db "$db" -o docs/curves.png

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chromium" ]; then
    page=$(mktemp /tmp/gradbench-report.XXXXXX.html)
    $gradbench report --db "$db" --format html -o "$page"
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1800 \
        --screenshot="$PWD/docs/report_html.png" "file://$page" 2> /dev/null
    rm -f "$page"
else
    echo "docs/report_html.png not remade: Chromium is not installed (apt-get install chromium)" >&2
fi
