#!/usr/bin/env bash
# A/B benchmark of "bastion verify": the working tree against another
# revision (by default the last commit), in paired, alternating rounds on
# the same journal, as docs/BENCHMARKS.md describes.
#
#   .ci/bench-verify-ab.sh [REV]
#
# The journal is recorded by the older binary ("bastion record -- head -c
# BENCH_MIB M /dev/zero"), so that both can read it. Each round runs both
# verifies, the first of the pair alternating between rounds; the result is
# the median of each binary's times, the median of the per-round ratios
# (new / old), and MB/s of payload.
#
# Environment: BENCH_ROUNDS (default 7), BENCH_MIB (default 512), TMPDIR;
# BENCH_JOURNAL and BENCH_KEY verify that journal with that public key
# instead (it must be of a schema both binaries read).
set -euo pipefail

cd "$(dirname "$0")/.."

REV=${1:-HEAD}
ROUNDS=${BENCH_ROUNDS:-7}
MIB=${BENCH_MIB:-512}

tmp=$(mktemp -d -t bastion-ab.XXXXXX)
cleanup() {
	git worktree remove --force "$tmp/src" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building $REV and the working tree"
git worktree add --detach "$tmp/src" "$REV" >/dev/null
(cd "$tmp/src" && CGO_ENABLED=1 go build -o "$tmp/old" ./cmd/bastion)
CGO_ENABLED=1 go build -o "$tmp/new" ./cmd/bastion

export BASTION_HOME=$tmp/home
"$tmp/old" ca init >/dev/null
KEY=$BASTION_HOME/journal.pub
if [[ -n ${BENCH_JOURNAL:-} ]]; then
	DB=$BENCH_JOURNAL KEY=${BENCH_KEY:?BENCH_KEY must name the public key of BENCH_JOURNAL}
	echo "== verifying $DB"
else
	DB=$tmp/journal.db
	echo "== recording $MIB MiB with $REV"
	"$tmp/old" record -q --db "$DB" -- head -c "${MIB}M" /dev/zero >/dev/null
fi

# unrecorded BIN prints --unrecorded if BIN records its reads: the
# benchmark measures verification, not the writer that records it, and the
# journal must not grow between rounds.
unrecorded() { if "$1" help verify | grep -q -- --unrecorded; then echo --unrecorded; fi; }
UNREC_old=$(unrecorded "$tmp/old") UNREC_new=$(unrecorded "$tmp/new")

# run BIN prints the seconds one verify of the journal takes, and checks
# that it says intact.
run() {
	local start end flag
	if [[ $1 == "$tmp/old" ]]; then flag=$UNREC_old; else flag=$UNREC_new; fi
	start=$(date +%s%N)
	"$1" verify $flag --db "$DB" --key "$KEY" --json >"$tmp/out.json"
	end=$(date +%s%N)
	grep -q '"intact": true' "$tmp/out.json" || { echo "bench: $1 does not find the journal intact" >&2; exit 1; }
	echo "$(( (end - start) / 1000 ))"
}
payload=$("$tmp/new" verify $UNREC_new --db "$DB" --key "$KEY" --json | awk -F': ' '/"payload_bytes"/ { gsub(",", "", $2); print $2; exit }')

old_t=() new_t=() ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then
		o=$(run "$tmp/old"); n=$(run "$tmp/new")
	else
		n=$(run "$tmp/new"); o=$(run "$tmp/old")
	fi
	old_t+=("$o") new_t+=("$n")
	ratios+=("$(awk -v n="$n" -v o="$o" 'BEGIN { printf "%.4f", n / o }')")
	printf 'round %d: %s %.3f s, working tree %.3f s, ratio %s\n' "$r" "$REV" "$(awk -v x="$o" 'BEGIN{print x/1e6}')" "$(awk -v x="$n" 'BEGIN{print x/1e6}')" "${ratios[-1]}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mo=$(median "${old_t[@]}") mn=$(median "${new_t[@]}") mr=$(median "${ratios[@]}")
leaves=$("$tmp/new" verify $UNREC_new --db "$DB" --key "$KEY" --json | awk -F': ' '/"tree_size"/ { gsub(",", "", $2); print $2; exit }')
echo "== verify of $((payload >> 20)) MiB of payload in $leaves leaves, $ROUNDS rounds"
awk -v mo="$mo" -v mn="$mn" -v mr="$mr" -v p="$payload" -v rev="$REV" 'BEGIN {
	printf "median %-12s %.3f s  %7.0f MB/s\n", rev, mo / 1e6, p / (mo / 1e6) / 1e6
	printf "median working tree %.3f s  %7.0f MB/s\n", mn / 1e6, p / (mn / 1e6) / 1e6
	printf "median of per-round ratios (working tree / %s): %.3f\n", rev, mr
}'
