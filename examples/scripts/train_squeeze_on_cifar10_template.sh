#!/usr/bin/env bash
# Train SqueezeNet (simple bypass) with TREC on CIFAR-10, as in the TREC paper's scripts.
#
#   DATASET_PATH: the CIFAR-10 python-pickle directory (cifar-10-batches-py, with data_batch_1..5
#                 and test_batch); CHECKPOINT_PATH: where best.keras and history.json go.
# TREC on conv1 and the expand-3x3 convolutions of fire2 and fire3 (indices in build order, see
# trec_tflm.training.models.conv_layers); L = j*Cin keeps the int8 kernel on its fast strip path.
set -euo pipefail
DATASET_PATH=${DATASET_PATH:-$HOME/data/cifar-10-batches-py}
CHECKPOINT_PATH=${CHECKPOINT_PATH:-runs/squeezenet_trec}
cd "$(dirname "$0")/.."

python3 train_model.py \
    --model_name=SqueezeNet \
    --dataset_path="$DATASET_PATH" \
    --checkpoint_path="$CHECKPOINT_PATH" \
    --trec=0,3,6 --L=9,16,16 --H=6,6,6 \
    --epochs=60 --batch_size=128 --lr=0.002

trec-tflm convert "$CHECKPOINT_PATH/best.keras" -o "$CHECKPOINT_PATH/squeezenet_trec.tflite" \
    --dataset cifar10 --dataset-path "$DATASET_PATH"
trec-tflm inspect "$CHECKPOINT_PATH/squeezenet_trec.tflite"
