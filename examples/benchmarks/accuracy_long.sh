#!/bin/sh
# The CMSIS-NN net on a longer schedule than accuracy.sh's 2-epoch runs, as recorded in
# docs/BENCHMARKS.md ("A longer schedule"): all 55,000 training images, the dense twin 10 epochs,
# then 3 epochs of fine-tuning from it at lr 1e-3 for the twin itself (the control), for the TREC
# net with all three convolutions TREC, and with conv1 and conv2 only; each TREC net also
# distilled from the twin. Every net keeps the builder's default (L, H). Each run is skipped when
# its history.json already has a test result. About 3 hours on 2 cores.
#
#   sh examples/benchmarks/accuracy_long.sh [OUT]        (default OUT: runs/bench_long)
set -e
OUT=${1:-runs/bench_long}
mkdir -p "$OUT"

. "$(dirname "$0")/run_train.sh"

CIFAR_DATA=${CIFAR_DATA:-"--dataset fashion_mnist_32x32x3"}
NET="--model cmsisnn_cifar10 $CIFAR_DATA --batch-size 64"
TWIN="$OUT/cmsisnn_cifar10_dense/best.keras"
run cmsisnn_cifar10_dense $NET --epochs 10 --trec none
FT="$NET --epochs 3 --lr 0.001 --init-from $TWIN"
run cmsisnn_cifar10_dense_cont $FT --trec none
run cmsisnn_cifar10_trec $FT
run cmsisnn_cifar10_trec_kd $FT --distill-from "$TWIN"
run cmsisnn_cifar10_trec01 $FT --trec 0,1
run cmsisnn_cifar10_trec01_kd $FT --trec 0,1 --distill-from "$TWIN"
echo "$(date +%T) done: results in $OUT/*/history.json"
