#!/bin/sh
# Accuracy and rc of TREC models against their dense twins, and the hash-centre / hash-learning
# comparison, as recorded in docs/BENCHMARKS.md. Each run is skipped when its history.json already
# has a test result, so an interrupted run resumes. About 2 hours on 2 cores.
#
#   sh examples/benchmarks/accuracy.sh [OUT]        (default OUT: runs/bench)
#
# OUT/<model>_trec/best.keras are the models `trec-tflm bench-kernels --models-dir OUT` measures.
set -e
OUT=${1:-runs/bench}
mkdir -p "$OUT"

. "$(dirname "$0")/run_train.sh"

# CIFAR-10 architectures on the 32x32x3 Fashion-MNIST stand-in (CIFAR-10 is not on the machine;
# with it: CIFAR_DATA="--dataset cifar10 --dataset-path DIR"): the dense twin, then the TREC net
# with the builder's default (L, H), initialised from the twin and fine-tuned.
CIFAR_DATA=${CIFAR_DATA:-"--dataset fashion_mnist_32x32x3"}
C32="$CIFAR_DATA --epochs 2 --train-limit 20000 --batch-size 64"
for m in cmsisnn_cifar10 cifarnet squeezenet; do
    run "${m}_dense" --model "$m" $C32 --trec none
    run "${m}_trec" --model "$m" $C32 --init-from "$OUT/${m}_dense/best.keras" --lr 0.001
done

# The demo net on Fashion-MNIST: hash centre (per-image mean vs none) and learned vs frozen hash,
# trained from scratch so the hash's own contribution shows.
CMP="--model fashion_net --dataset fashion_mnist --epochs 2 --train-limit 20000 --batch-size 64"
run cmp_dense $CMP --trec none
run cmp_mean $CMP
run cmp_none $CMP --hash-center none
run cmp_frozen $CMP --freeze-hash
echo "$(date +%T) done: results in $OUT/*/history.json"
