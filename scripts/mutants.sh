#!/usr/bin/env bash
# `make mutants`: mutation testing of the pure rules (the `domain` crate,
# every file in it) with its unit tests. Prints the score and every surviving
# mutant, and fails if any survives. A mutant that cannot matter is skipped in
# the code with `#[mutants::skip]` and a one-line reason, never by file.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${MUTANTS_OUT:-target-mutants}
mkdir -p "$out"
# Each job builds its own copy of the tree; a shared target folder would make
# them rebuild each other's work.
status=0
env -u CARGO_TARGET_DIR cargo mutants --package webhooks-domain --jobs 2 --output "$out" \
  --no-shuffle --colors never || status=$?

count() { cat "$out/mutants.out/$1.txt" 2>/dev/null | grep -c . || true; }
caught=$(count caught) missed=$(count missed) unviable=$(count unviable) timeout=$(count timeout)
echo "mutants: $caught caught, $missed missed, $timeout timed out (counted as caught), $unviable unviable"
if [ $((caught + missed + timeout)) -gt 0 ]; then
  echo "score: $(( 100 * (caught + timeout) / (caught + missed + timeout) ))% of viable mutants caught"
fi
if [ "$missed" -gt 0 ]; then
  echo "surviving mutants:"
  cat "$out/mutants.out/missed.txt"
  exit 2
fi
# 3: some timed out (a mutant that hangs is caught); anything else is a failure.
[ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
