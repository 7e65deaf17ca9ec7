#!/usr/bin/env bash
# Turns the printed tables of the benches into Markdown tables, for
# BENCHMARKS.md. Reads bench output on stdin (or from the files named) and
# prints one Markdown table per table it recognises; other lines are dropped.
#
#   cargo bench --locked --bench compare 2>/dev/null | bash scripts/bench-table.sh
#   cargo bench --locked --bench redis > redis.txt; bash scripts/bench-table.sh redis.txt
#
# Recognised: compare, redis (the 1-caller rows' "(blocks a-b)" becomes the
# last column), tier, cold_read, and cache_aside's get_many and get_or_set.
set -euo pipefail
awk '
# A table: its column names, and which field of a row must match `pat`.
function header(cols, at, pat,    i, line, rule) {
  want = split(cols, names, "|")
  line = "|"; rule = "|"
  for (i = 1; i <= want; i++) { line = line " " names[i] " |"; rule = rule "---|" }
  print ""; print line; print rule
  check = at; shape = pat; intable = 1
}
# Fields 1 .. want-1 are columns; the rest of the line is the last one.
function row(    i, line, last) {
  line = "|"
  for (i = 1; i < want; i++) line = line " " $i " |"
  last = ""
  for (i = want; i <= NF; i++) last = last (last == "" ? "" : " ") $i
  gsub(/^\(|\)$/, "", last)
  sub(/^blocks /, "", last)
  sub(/ ops a side$/, "", last)
  print line " " last " |"
}
/^cell +io +callers/      { header("cell|io|callers|handle op/s|raw op/s|handle/raw|handle µs/op|raw µs/op|blocks (middle half)", 6, "x$"); next }
/^cell +callers/          { header("cell|callers|handle op/s|raw op/s|handle/raw|handle µs/op|raw µs/op", 5, "x$"); next }
/^callers +tier ops\/s/   { header("callers|tier op/s|raw op/s|tier/raw|tier µs/op|raw µs/op", 4, "x$"); next }
/^round +side/            { header("round|side|op/s|p50 µs|p99 µs|p99.9 µs|max µs", 1, "^[0-9]+$"); next }
/^backend +sequential us/ { header("backend|sequential µs|get_many µs|get_many speed-up", 4, "x$"); next }
/^backend +callers/       { header("backend|callers|get_cache ops/s|get_or_set ops/s|get_or_set / get|ops a side", 5, "x$"); next }
intable && NF >= want - 1 && $check ~ shape { row(); next }
{ intable = 0 }
' "$@"
