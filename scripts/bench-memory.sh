#!/usr/bin/env bash
# Peak memory of one `zarr-fuse update` from a large CSV file, against the file's size (issue B:
# inputs larger than memory are read in bounded memory). Usage:
#   scripts/bench-memory.sh [ROWS] [SITES]     (default 20 000 000 rows over 1 000 sites, ~1 GB)
#   ZF_TIMES=irregular scripts/bench-memory.sh ROWS SITES
#                                   (every row its own second, as epoch seconds: ~36 bytes a row)
# Prints the CSV size, the peak RSS of the update process (GNU time) and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-20000000}
sites=${2:-1000}
# ZF_TIME_CHUNK: chunk size along time (default 256)
# ZF_BIN: another build of zarr-fuse to measure (e.g. an older one, for a before/after)
bin=${ZF_BIN:-target/release/zarr-fuse}
[ -n "${ZF_BIN:-}" ] || cargo build --release --quiet
dir=$(mktemp -d "${TMPDIR:-/tmp}/zf-mem-XXXXXX")
trap 'rm -rf "$dir"' EXIT
times=${ZF_TIMES:-hourly}
tick=h
[ "$times" = irregular ] && tick=s
cat > "$dir/schema.yaml" <<YAML
ATTRS: {title: memory bench}
VARS:
  temp: {coords: [time, site], unit: K, source_unit: degC}
  hum: {coords: [time, site], unit: '%'}
  pressure: {coords: [time, site], unit: hPa}
COORDS:
  time: {unit: {tick: $tick, tz: null}, source_unit: {tick: s, tz: UTC}, chunk_size: ${ZF_TIME_CHUNK:-256}}
  site: {type: 'str[8]', sorted: false, chunk_size: 256}
YAML
if [ "$times" = irregular ]; then
# sensor readings: sites in turn, every row a distinct second, 7 s apart per round plus jitter
awk -v rows="$rows" -v sites="$sites" 'BEGIN {
  print "time,site,temp,hum,pressure";
  for (r = 0; r < rows; r++) {
    printf "%d,site%04d,%.2f,%.1f,%.1f\n", 946684800 + int(r / sites) * 7 * sites + r % sites * 3 + (r % 2),
      r % sites, (r % 4000) * 0.01, r % 100, 950 + r % 100;
  }
}' > "$dir/in.csv"
else
# hourly ISO times (28-day months: every hour distinct) x site names x 3 values: ~48 bytes per
# row, the shape of a weather export
awk -v rows="$rows" -v sites="$sites" 'BEGIN {
  print "time,site,temp,hum,pressure";
  for (r = 0; r < rows; r++) {
    h = int(r / sites); s = r % sites;
    d = int(h / 24); printf "%d-%02d-%02dT%02d:00:00Z,site%04d,%.2f,%.1f,%.1f\n",
      2000 + int(d / 336), 1 + int(d / 28) % 12, 1 + d % 28, h % 24, s,
      (r % 4000) * 0.01, r % 100, 950 + r % 100;
  }
}' > "$dir/in.csv"
fi
size=$(stat -c %s "$dir/in.csv")
"$bin" init "$dir/repo" --schema "$dir/schema.yaml" > /dev/null
/usr/bin/time -f '%M %e' -o "$dir/time" "$bin" update "$dir/repo" "$dir/in.csv" \
  --author 'Bench <bench@example.org>' -m memory ${ZF_UPDATE_ARGS:-} > /dev/null
read -r kb secs < "$dir/time"
awk -v size="$size" -v kb="$kb" -v secs="$secs" -v rows="$rows" 'BEGIN {
  printf "CSV %d rows, %.0f MB; update %.1f s (%.0f rows/s); peak RSS %.0f MB = %.2f x the CSV size\n",
    rows, size / 1e6, secs, rows / secs, kb * 1024 / 1e6, kb * 1024 / size }'
