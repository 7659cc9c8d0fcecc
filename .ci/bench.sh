#!/usr/bin/env bash
# End-to-end benchmarks, run by "make bench" after the Go benchmarks. See
# docs/BENCHMARKS.md for what each figure means and the targets.
#
#   record   "bastion record -- head -c 512M /dev/zero" against util-linux
#            "script -q -c 'head -c 512M /dev/zero' /dev/null": both run the
#            command in a pseudo-terminal and record it; script writes its
#            typescript to /dev/null, bastion commits every byte to its
#            journal (synchronous=FULL) before forwarding it. Both with
#            stdin and stdout on /dev/null.
#   journal  bytes of journal.db (+ -wal), once the writer has closed, per
#            payload byte that "bastion verify --json" reports.
#   verify   "bastion verify --json" of that journal, in MB/s of payload,
#            against "sha256sum" of a file of the same size (and, for
#            reference, "openssl dgst -sha256" where installed).
#
# Machines are shared: each comparison runs BENCH_ROUNDS times, bastion and
# its peer alternating in the same round (and which goes first alternating
# between rounds); the headline is the median of the per-round ratios.
# Each timed run reports how busy the rest of the machine was meanwhile
# ("oth", in cores: busy CPU time outside the measured command's processes,
# steal included, and so are kernel threads working for the command: a
# pseudo-terminal's flip-buffer work and writeback run in kworkers, about
# 0.2-0.45 cores for script here), and each round probes the latency of one
# synchronous write where the journal goes ("sync"): a round where a run
# saw more than BENCH_BUSY cores busy elsewhere is marked with "*".
#
# Usage: .ci/bench.sh [GO_BENCH_OUTPUT]
#   GO_BENCH_OUTPUT  a file of "go test -bench" output, as make bench saves
#                    it; its medians are printed against the targets.
# Environment:
#   BENCH_ROUNDS  rounds per comparison (default 3)
#   BENCH_MIB     MiB the recorded command writes (default 512)
#   BENCH_BUSY    cores busy elsewhere that mark a round disturbed (0.75)
#   TMPDIR        where the temporary home, journal and file go: needs
#                 about 2.2 x BENCH_MIB MiB free; all removed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
MIB=${BENCH_MIB:-512}
BUSY=${BENCH_BUSY:-0.75}
GO_RESULTS=${1:-}

if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ && $MIB =~ ^[1-9][0-9]*$ ]]; then
	echo "bench: BENCH_ROUNDS and BENCH_MIB must be positive integers" >&2
	exit 2
fi
BYTES=$((MIB * 1024 * 1024))
for tool in script sha256sum head dd awk stat; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench: $tool is not installed (script is in util-linux)" >&2
		exit 2
	fi
done
HAVE_OPENSSL=0
command -v openssl >/dev/null && HAVE_OPENSSL=1

make --no-print-directory build >/dev/null
BASTION=$PWD/bin/bastion

tmp=$(mktemp -d -t bastion-bench.XXXXXX)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export BASTION_HOME=$tmp/home
"$BASTION" ca init >/dev/null
DB=$tmp/journal.db
PEERFILE=$tmp/peer.bin
CMD="head -c ${MIB}M /dev/zero"

# ---------------------------------------------------------------- helpers

# cpu_busy prints the machine's busy CPU time so far, in seconds: every
# state of /proc/stat's "cpu" line but idle and iowait.
HZ=$(getconf CLK_TCK)
cpu_busy() {
	awk -v hz="$HZ" '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# secs converts bash's "times" notation (1m2.345s) to seconds.
secs() { awk -v t="$1" 'BEGIN { split(t, a, "m"); sub("s", "", a[2]); print a[1] * 60 + a[2] }'; }

# timed CMD...: runs CMD with stdin and stdout on /dev/null and sets
# WALL (seconds), CPU (user + system seconds of CMD and its children) and
# OTHERS (cores the rest of the machine kept busy meanwhile).
timed() {
	local t0 t1 b0 b1 line u s
	b0=$(cpu_busy)
	t0=$(date +%s%N)
	# times reports this subshell's children: CMD and what it waited for.
	# (Not in a pipeline: that would be another subshell, without them.)
	line=$(
		"$@" </dev/null >/dev/null
		times
	)
	t1=$(date +%s%N)
	b1=$(cpu_busy)
	line=${line##*$'\n'}
	WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	read -r u s <<<"$line"
	CPU=$(awk -v u="$(secs "$u")" -v s="$(secs "$s")" 'BEGIN { printf "%.2f", u + s }')
	OTHERS=$(awk -v b0="$b0" -v b1="$b1" -v c="$CPU" -v w="$WALL" \
		'BEGIN { o = (b1 - b0 - c) / w; printf "%.2f", (o < 0 ? 0 : o) }')
}

# sync_probe prints the mean latency in ms of 200 synchronous 64 KiB writes
# in the temporary directory: each commit of a synchronous=FULL journal
# waits for one such write (of its own size) at least once.
sync_probe() {
	LC_ALL=C dd if=/dev/zero of="$tmp/sync.probe" bs=64k count=200 oflag=dsync 2>&1 |
		awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") printf "%.2f", $(i - 1) * 1000 / 200 }'
	rm -f "$tmp/sync.probe"
}

# median and range read numbers, one a line.
median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
med() { printf '%s\n' "$@" | median; }
rng() { printf '%s\n' "$@" | range; }

# jnum KEY prints the first integer value of "KEY" in the JSON on stdin.
jnum() { grep -o "\"$1\": *[0-9]*" | head -n 1 | grep -o '[0-9]*$'; }

mbps() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.1f", n / t / 1e6 }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.3f}" 'BEGIN { printf f, a / b }'; }
maxf() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a ? b : a) }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
filesize() { if [[ -e $1 ]]; then stat -c %s "$1"; else echo 0; fi; }

run_script() { script -q -c "$CMD" /dev/null; }
# new_journal removes the journal and what the key remembers of it (its last
# kept checkpoint, under the home's signed/), so that the next record starts
# a new journal at the same path on purpose; bastion refuses to otherwise.
new_journal() { rm -rf "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$BASTION_HOME/signed"; }
run_record() {
	new_journal
	"$BASTION" record --db "$DB" -q -- head -c "${MIB}M" /dev/zero
}
# Unrecorded: what is measured is verification, not the writer that would
# record the read.
run_verify() { "$BASTION" verify --unrecorded --db "$DB" --json >"$tmp/verify.json"; }
run_sha() { sha256sum "$PEERFILE"; }
run_openssl() { openssl dgst -sha256 "$PEERFILE"; }

# ---------------------------------------------------------------- machine

sqlite_embedded=unknown
if dir=$(go list -m -f '{{.Dir}}' github.com/mattn/go-sqlite3 2>/dev/null) && [[ -f $dir/sqlite3-binding.c ]]; then
	sqlite_embedded=$(grep -m 1 '^#define SQLITE_VERSION ' "$dir/sqlite3-binding.c" | tr -d '"' | awk '{ print $3 }')
fi
echo "== machine"
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpus:        $(nproc) x $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory:      $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "kernel:      $(uname -sr)"
echo "go:          $(go version | awk '{ print $3, $4 }')"
echo "sqlite:      $sqlite_embedded embedded in bastion (mattn/go-sqlite3 $(go list -m -f '{{.Version}}' github.com/mattn/go-sqlite3 2>/dev/null || echo '?'))$(command -v sqlite3 >/dev/null && echo "; sqlite3 CLI $(sqlite3 --version | awk '{ print $1 }')")"
echo "script:      $(script --version 2>&1 | head -n 1)"
echo "sha256sum:   $(sha256sum --version 2>&1 | head -n 1)$( ((HAVE_OPENSSL)) && echo "; $(openssl version)")"
echo "temp fs:     $(df -PT "$tmp" | awk 'NR == 2 { print $2 }'); one synchronous 64 KiB write: $(sync_probe) ms"
echo "bastion:     $("$BASTION" version)"
echo "load:        $(loadavg) (1, 5, 15 min) at start"
echo "rounds:      $ROUNDS; each run moves $MIB MiB ($BYTES bytes); MB = 10^6 bytes"
echo

# ---------------------------------------------------------------- calibration

# One untimed run of each, counting what actually reaches stdout; it also
# warms the page cache and the binaries.
echo "== calibration ($CMD, output counted with wc -c)"
n=$(script -q -c "$CMD" /dev/null </dev/null | wc -c)
echo "script:  $n bytes to stdout"
[[ $n -eq $BYTES ]] || { echo "bench: script forwarded $n bytes, want $BYTES" >&2; exit 1; }
new_journal
n=$("$BASTION" record --db "$DB" -q -- head -c "${MIB}M" /dev/zero </dev/null | wc -c)
out=$("$BASTION" sessions list --db "$DB" --json | jnum out_bytes)
echo "bastion: $n bytes to stdout, $out output bytes recorded"
[[ $n -eq $BYTES && $out -eq $BYTES ]] || { echo "bench: bastion forwarded $n and recorded $out bytes, want $BYTES" >&2; exit 1; }
new_journal
head -c "${MIB}M" /dev/zero >"$PEERFILE"
echo

# ---------------------------------------------------------------- rounds

declare -a R_SCRIPT R_RECORD R_RATIO R_JB R_VERIFY R_SHA R_VRATIO R_OSSL R_ORATIO ROW_REC ROW_VER
disturbed=0
for ((r = 1; r <= ROUNDS; r++)); do
	busiest=0
	first=peer
	((r % 2)) || first=bastion
	echo "round $r of $ROUNDS ($first first; load $(loadavg))..."
	sync_ms=$(sync_probe)

	# record against script
	if [[ $first == peer ]]; then pair="script record"; else pair="record script"; fi
	for who in $pair; do
		timed "run_$who"
		declare "W_$who=$WALL" "O_$who=$OTHERS"
		busiest=$(maxf "$busiest" "$OTHERS")
	done
	jbytes=$(($(filesize "$DB") + $(filesize "$DB-wal")))

	# verify this round's journal against hashing a file of the same size
	if [[ $first == peer ]]; then pair="sha verify"; else pair="verify sha"; fi
	((HAVE_OPENSSL)) && pair="$pair openssl"
	for who in $pair; do
		timed "run_$who"
		declare "W_$who=$WALL" "O_$who=$OTHERS"
		[[ $who == openssl ]] || busiest=$(maxf "$busiest" "$OTHERS")
	done
	intact=$(grep -c '"intact": true' "$tmp/verify.json" || true)
	payload=$(jnum payload_bytes <"$tmp/verify.json")
	out=$("$BASTION" sessions list --db "$DB" --json | jnum out_bytes)
	if [[ $intact -ne 1 || $out -ne $BYTES ]]; then
		echo "bench: round $r: journal intact=$intact, $out output bytes recorded, want $BYTES" >&2
		exit 1
	fi
	new_journal

	mark=" "
	if awk -v b="$busiest" -v t="$BUSY" 'BEGIN { exit !(b > t) }'; then
		mark="*"
		disturbed=$((disturbed + 1))
	fi
	R_SCRIPT+=("$(mbps "$BYTES" "$W_script")")
	R_RECORD+=("$(mbps "$BYTES" "$W_record")")
	R_RATIO+=("$(div "$W_script" "$W_record")")
	R_JB+=("$(div "$jbytes" "$payload" %.4f)")
	R_VERIFY+=("$(mbps "$payload" "$W_verify")")
	R_SHA+=("$(mbps "$BYTES" "$W_sha")")
	R_VRATIO+=("$(awk -v v="${R_VERIFY[-1]}" -v s="${R_SHA[-1]}" 'BEGIN { printf "%.3f", v / s }')")
	ossl="-"
	if ((HAVE_OPENSSL)); then
		R_OSSL+=("$(mbps "$BYTES" "$W_openssl")")
		R_ORATIO+=("$(awk -v v="${R_VERIFY[-1]}" -v s="${R_OSSL[-1]}" 'BEGIN { printf "%.3f", v / s }')")
		ossl="${R_OSSL[-1]}"
	fi
	ROW_REC+=("$(printf '%-5s %-7s | %7s %7s %5s | %7s %7s %5s | %6s | %9s | %6s' \
		"$r$mark" "$first" \
		"$W_script" "${R_SCRIPT[-1]}" "$O_script" \
		"$W_record" "${R_RECORD[-1]}" "$O_record" \
		"${R_RATIO[-1]}" "$jbytes" "${R_JB[-1]}")")
	ROW_VER+=("$(printf '%-5s %-7s | %7s %7s %5s | %7s %7s %5s | %6s | %7s | %5s' \
		"$r$mark" "$first" \
		"$W_sha" "${R_SHA[-1]}" "$O_sha" \
		"$W_verify" "${R_VERIFY[-1]}" "$O_verify" \
		"${R_VRATIO[-1]}" "$ossl" "$sync_ms")")
done
echo

echo "== record: $CMD in a terminal, stdin and stdout /dev/null (ratio = bastion MB/s / script MB/s)"
printf '%-5s %-7s | %-21s | %-21s | %-6s | %-9s | %-6s\n' "" "" "script" "bastion record" "" "journal" ""
printf '%-5s %-7s | %7s %7s %5s | %7s %7s %5s | %6s | %9s | %6s\n' \
	round first s MB/s oth s MB/s oth ratio bytes "j/p"
printf '%s\n' "${ROW_REC[@]}"
echo
echo "== verify: bastion verify --json of that round's journal (MB/s of payload) against sha256sum of a $MIB MiB file"
printf '%-5s %-7s | %-21s | %-21s | %-6s | %-7s | %-5s\n' "" "" "sha256sum" "bastion verify" "" "openssl" "sync"
printf '%-5s %-7s | %7s %7s %5s | %7s %7s %5s | %6s | %7s | %5s\n' \
	round first s MB/s oth s MB/s oth ratio "MB/s" ms
printf '%s\n' "${ROW_VER[@]}"
echo
echo "oth = cores busy outside the measured command meanwhile: other tenants, steal, and kernel threads"
echo "      working for the command (pty flip buffers, writeback; about 0.2-0.45 for script on its own);"
echo "j/p = journal bytes (journal.db + -wal, writer closed) / payload bytes (bastion verify --json);"
echo "sync = mean latency of one synchronous 64 KiB write in the journal's directory, probed before the round."
if ((disturbed > 0)); then
	echo "* $disturbed of $ROUNDS round(s) ran while others kept more than $BUSY cores busy: noisy figures; rerun when quieter."
fi
echo "load:        $(loadavg) (1, 5, 15 min) at end"
echo

# ---------------------------------------------------------------- summary

verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == ">=" ? v >= t : v <= t); print (ok ? "met" : "MISSED") }'; }
row() { printf '%-44s %-10s %-26s %s\n' "$@"; }

ratio=$(med "${R_RATIO[@]}")
jb=$(med "${R_JB[@]}")
verify=$(med "${R_VERIFY[@]}")
echo "== end-to-end summary: median of $ROUNDS rounds [range]"
row figure target measured verdict
row "record throughput ratio, bastion / script" ">= 0.5" "$ratio [$(rng "${R_RATIO[@]}")]" \
	"$(verdict "$ratio" 0.5 ">=")$(awk -v v="$ratio" 'BEGIN { if (v < 1.0) print "; goal 1.0 not reached" }')"
row "  script MB/s" "" "$(med "${R_SCRIPT[@]}") [$(rng "${R_SCRIPT[@]}")]" ""
row "  bastion record MB/s" "" "$(med "${R_RECORD[@]}") [$(rng "${R_RECORD[@]}")]" ""
row "journal bytes per payload byte" "<= 1.05" "$jb [$(rng "${R_JB[@]}")]" "$(verdict "$jb" 1.05 "<=")"
row "bastion verify (CLI), MB/s of payload" ">= 500" "$verify [$(rng "${R_VERIFY[@]}")]" "$(verdict "$verify" 500 ">=")"
row "  sha256sum MB/s" "" "$(med "${R_SHA[@]}") [$(rng "${R_SHA[@]}")]" ""
row "  ratio, verify / sha256sum" "" "$(med "${R_VRATIO[@]}") [$(rng "${R_VRATIO[@]}")]" ""
if ((HAVE_OPENSSL)); then
	row "  openssl dgst -sha256 MB/s" "" "$(med "${R_OSSL[@]}") [$(rng "${R_OSSL[@]}")]" ""
	row "  ratio, verify / openssl" "" "$(med "${R_ORATIO[@]}") [$(rng "${R_ORATIO[@]}")]" ""
fi
echo

# ---------------------------------------------------------------- Go benchmarks

if [[ -n $GO_RESULTS ]]; then
	echo "== Go benchmarks: median of the -count runs [range]"
	awk '
		/^Benchmark/ {
			name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
			for (i = 3; i < NF; i += 2) {
				unit = $(i + 1)
				if (unit == "MB/s" || unit == "frames/s" || unit == "journal-bytes/payload-byte" || unit == "certs/s" || unit == "events/s" || unit ~ /^p[0-9]+-ms$/ || unit ~ /cpu-µs\/op$/ || unit ~ /^(bastion|jump|direct)/ || unit == "MB/s-both-ways" || unit ~ /KiB\/session$/ || unit ~ /^rss-/ || unit == "sessions-held" || unit == "s/report" || unit == "pdf-pages" || unit == "generate-s" || unit == "journal-MB" || unit == "pg/sqlite" || unit == "two/one" || unit ~ /^(sqlite|pg|one|two)-MB\/s$/ || unit ~ /-(p50|p99|max)-ms$/ || unit == "ns/op" && name ~ /^Session1000Roles/) print name, unit, $i
			}
		}' "$GO_RESULTS" | sort -k1,1 -k2,2 -k3,3g | awk '
		BEGIN {
			target["AppendSmallFrames frames/s"] = ">= 200000"
			target["AppendBulk MB/s"] = ">= 300"
			target["AppendBulk journal-bytes/payload-byte"] = "<= 1.05"
			target["AppendBulkFull MB/s"] = ">= 300"
			target["AppendBulkFull journal-bytes/payload-byte"] = "<= 1.05"
			target["Verify MB/s"] = ">= 500"
			target["IssuanceThroughput certs/s"] = ">= 2000"
			target["IssuanceThroughput p99-ms"] = "<= 20"
			target["IssuanceLatency p99-ms"] = "<= 20"
			target["FrontBulk bastion/jump"] = ">= 0.8"
			target["FrontBulk bastion-J/jump"] = ">= 0.7"
			target["FrontBulk bastion-tt/jump-tt"] = ">= 1.0"
			target["FrontTrue bastion/jump"] = "<= 0.5"
			target["FrontIdle pty-KiB/session"] = "<= 256"
			target["FrontIdle exec-KiB/session"] = "<= 256"
			target["FrontIdle rss-end/start"] = "<= 1.2"
			target["FrontIdle sessions-held"] = ">= 1000"
			target["Session1000Roles ns/op"] = "<= 10000"
			target["Session1000RolesCommand ns/op"] = "<= 10000"
			target["Session1000RolesDenied ns/op"] = "<= 10000"
			target["Session1000RolesUnindexedTarget ns/op"] = "<= 10000"
			target["MaskTerminal MB/s"] = ">= 300"
			target["FrontEcho dbm-max-ms"] = "<= 15"
			target["FrontWitnessed witnessed/none"] = ">= 0.97"
			target["FrontEcho added-dbm-p50-ms"] = "<= 1"
			target["EvidenceQuarter s/report"] = "<= 30"
			target["EvidenceQuarter pdf-pages"] = "<= 39"
			printf "%-44s %-10s %-26s %s\n", "benchmark metric", "target", "measured", "verdict"
		}
		function fmt(x) { return (x >= 1000) ? sprintf("%.0f", x) : sprintf("%.4g", x) }
		function flush(   m, t, v, ok) {
			if (n == 0) return
			m = (n % 2) ? v_[(n + 1) / 2] : (v_[n / 2] + v_[n / 2 + 1]) / 2
			t = (key in target) ? target[key] : ""
			v = ""
			if (t != "") {
				split(t, p, " ")
				ok = (p[1] == ">=") ? m >= p[2] : m <= p[2]
				v = ok ? "met" : "MISSED"
			}
			printf "%-44s %-10s %-26s %s\n", key, t, sprintf("%s [%s-%s] n=%d", fmt(m), fmt(v_[1]), fmt(v_[n]), n), v
			n = 0
		}
		{
			k = $1 " " $2
			if (k != key) { flush(); key = k }
			v_[++n] = $3
		}
		END { flush() }'
	echo
fi
