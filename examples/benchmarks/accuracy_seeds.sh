#!/bin/sh
# The CMSIS-NN net within 1 pt of its twin, over three fine-tuning seeds, as recorded in
# docs/BENCHMARKS.md ("CIFAR-10 architectures"): from the twin accuracy.sh trained in OUT, the
# builder's default (L, H) with seeds 1 and 2 (seed 0 is accuracy.sh's own OUT/cmsisnn_cifar10_trec)
# and H = 8 on all three convolutions with seeds 0, 1 and 2. Each model lands in
# OUT_seeds/<setting>_s<seed>/cmsisnn_cifar10_trec, so that `trec-tflm bench-kernels --models-dir
# OUT_seeds/h8_s0` measures it. Each run is skipped when its history.json already has a test
# result. About 15 minutes on 2 cores.
#
#   sh examples/benchmarks/accuracy_seeds.sh [OUT]        (default OUT: runs/bench)
set -e
OUT=${1:-runs/bench}
TWIN="$OUT/cmsisnn_cifar10_dense/best.keras"
[ -f "$TWIN" ] || { echo "no $TWIN: run examples/benchmarks/accuracy.sh $OUT first" >&2; exit 2; }
SEEDS="${OUT}_seeds"

. "$(dirname "$0")/run_train.sh"

CIFAR_DATA=${CIFAR_DATA:-"--dataset fashion_mnist_32x32x3"}
FT="--model cmsisnn_cifar10 $CIFAR_DATA --epochs 2 --train-limit 20000 --batch-size 64 --lr 0.001 --init-from $TWIN"
for seed in 0 1 2; do
    if [ "$seed" != 0 ]; then
        OUT="$SEEDS/default_s$seed"; mkdir -p "$OUT"
        run cmsisnn_cifar10_trec $FT --seed "$seed"
    fi
    OUT="$SEEDS/h8_s$seed"; mkdir -p "$OUT"
    run cmsisnn_cifar10_trec $FT --seed "$seed" --L 15,32,16 --H 8,8,8
done
echo "$(date +%T) done: results in $SEEDS/*/cmsisnn_cifar10_trec/history.json"
