#!/usr/bin/env bash
# Many recipe_curves.py runs at once, for the pretraining-recipe search (issue 10):
#
#   bash benchmarks/recipe_sweep.sh RECIPES OUT [PARALLEL] [DEADLINE_S] [DEVICE]
#
# RECIPES: one run per line, "NAME key=val ..." (recipe_curves.py's keys; '#' lines skipped).
# Each run writes OUT/NAME.jsonl (held-out MLM/SOP every eval_every steps) and OUT/NAME.log;
# PARALLEL runs at a time (default 8); every run still going at DEADLINE_S (default 400) is
# stopped, keeping the curve so far. DEVICE (cpu|gpu, default cpu) is added to every run; on
# a GPU the per-step curves are the CPU's (the same float32 arithmetic), many times faster, so
# one GPU sweeps recipes meant for a 2-core CPU. Tokenizers are cached in OUT (tok-*.model).
set -u
RECIPES=$1; OUT=$2; PAR=${3:-8}; DEADLINE=${4:-400}; DEV=${5:-cpu}
mkdir -p "$OUT"
T0=$(date +%s)
export RECIPE_OUT="$OUT" PYTHONUNBUFFERED=1
grep -v '^\s*#' "$RECIPES" | grep -v '^\s*$' | while read -r line; do echo "$line"; done | \
  xargs -P "$PAR" -I{} bash -c '
    line="{}"; name=${line%% *}
    rest=$(( '"$DEADLINE"' - ($(date +%s) - '"$T0"') ))
    [ $rest -lt 10 ] && { echo "$name: skipped (deadline)"; exit 0; }
    s=$(date +%s)
    timeout --signal=TERM $rest python benchmarks/recipe_curves.py $line device='"$DEV"' > "'"$OUT"'/$name.log" 2>&1
    echo "$name: exit $? in $(( $(date +%s) - s ))s"'
echo "sweep done in $(( $(date +%s) - T0 ))s"
