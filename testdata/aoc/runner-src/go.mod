module stellaops.dev/aoc-backfill

go 1.26
