#!/usr/bin/env bash
# Byte-for-byte outputs (issue #11: the redesign must change no output).
#
#   tests/golden.sh record         hash this build's outputs into tests/golden.sha256
#   tests/golden.sh check          compare this build's outputs with tests/golden.sha256
#   tests/golden.sh against REV    build REV in a temporary worktree, run both, compare
#
# The outputs: summary.json, model.npz and metrics.jsonl of the default task
# for seeds 1 to 10, of joint training (Adam with top-1, SGD with top-2
# renormalised, softmax without the vanilla network), of the staged gates
# top-2 and noisy softmax and of three clusters (all at d = 16), and
# `reproduce --quick`'s claims.json (skip it with GOLDEN_SKIP_REPRODUCE=1). Floating-point results may differ between CPUs
# (the matrix kernels pick AVX-512, AVX2 or NEON), so the recorded hashes
# hold for the machine that wrote them; `against REV` works on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-check}
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/base" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# Runs the binary $1 and writes the outputs' hashes to $2.
outputs() {
    local bin=$1 out=$2 dir
    dir=$(mktemp -d -p "$tmp")
    for seed in $(seq 1 10); do
        "$bin" run -q --seed "$seed" --out "$dir/seed$seed" >/dev/null
    done
    local small="--set task.d=16 --set metrics.test_samples=4000"
    local joint="$small --set moe.training=joint --set joint.steps=20000"
    variant() { "$bin" run -q --out "$dir/$1" "${@:2}" >/dev/null; }
    variant joint-adam --seed 3 $joint
    variant joint-sgd-top2 --seed 4 $joint --set joint.optimizer=sgd --set joint.lr=0.01 \
        --set moe.top_k=2 --set joint.renormalise=true
    variant joint-softmax --seed 5 $joint --set moe.gate=softmax --set vanilla.enabled=false
    variant top2 --seed 6 $small --set moe.top_k=2
    variant noisy --seed 7 $small --set moe.gate=softmax --set moe.gate_noise=0.1
    variant clusters3 --seed 8 $small --set task.clusters=3 --set 'task.signs=[1,-1,1]' \
        --set vanilla.enabled=false
    if [ "${GOLDEN_SKIP_REPRODUCE:-0}" != 1 ]; then
        "$bin" reproduce --quick -q --jobs 2 --out "$dir/reproduction" >/dev/null
    fi
    (cd "$dir" && sha256sum */summary.json */model.npz */metrics.jsonl \
        $([ -f reproduction/claims.json ] && echo reproduction/claims.json) | sort -k2) >"$out"
}

cargo build --release --quiet
case "$mode" in
record)
    outputs target/release/clustermoe tests/golden.sha256
    echo "recorded $(wc -l <tests/golden.sha256) hashes in tests/golden.sha256"
    ;;
check)
    outputs target/release/clustermoe "$tmp/now.sha256"
    expected=tests/golden.sha256
    if [ "${GOLDEN_SKIP_REPRODUCE:-0}" = 1 ]; then
        grep -v reproduction/ "$expected" >"$tmp/expected.sha256"
        expected=$tmp/expected.sha256
    fi
    diff "$expected" "$tmp/now.sha256" && echo "all outputs identical"
    ;;
against)
    rev=${2:?usage: tests/golden.sh against REV}
    git worktree add --quiet --detach "$tmp/base" "$rev"
    (cd "$tmp/base" && CARGO_TARGET_DIR="$root/target/golden-base" cargo build --release --quiet)
    outputs "$root/target/golden-base/release/clustermoe" "$tmp/base.sha256"
    outputs target/release/clustermoe "$tmp/now.sha256"
    diff "$tmp/base.sha256" "$tmp/now.sha256" && echo "all outputs identical to $rev"
    ;;
*)
    echo "usage: tests/golden.sh record | check | against REV" >&2
    exit 2
    ;;
esac
