#!/bin/bash
# Every performance benchmark of benchmarks/RESULTS.md, in one go (about 55
# minutes on a 2-core CPU). Run from the repository root after `pip install .`;
# tables go to benchmarks/results/ and the console.
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p benchmarks/results
python benchmarks/message_catalog_pairs.py --out benchmarks/results/pairs_de.tsv
python benchmarks/training_speed.py --steps 5 --output benchmarks/results/training_speed.json \
    | tee benchmarks/results/training_speed.txt
python benchmarks/generation_speed.py --output benchmarks/results/decoding.md \
    --json benchmarks/results/generation_speed.json
python benchmarks/translation_decoding.py --output benchmarks/results/decoding.md \
    --json benchmarks/results/translation_decoding.json
python benchmarks/bucketing.py --data-path benchmarks/results/pairs_de.tsv \
    --num-examples 4000 --epochs 3 --batch-size 32 --output benchmarks/results/bucketing.json \
    | tee benchmarks/results/bucketing.txt
python benchmarks/attention_memory.py --xla off --dtypes float32 \
    --output benchmarks/results/attention.md --json benchmarks/results/attention_memory.json
# Defaults and where the time goes: XLA by width and precision, steps per
# execution, per-op profiles of one training step, decoding by weight format.
rm -f benchmarks/results/xla_training_step.md benchmarks/results/profile_ops.md \
    benchmarks/results/decode_weight_precision.md
python benchmarks/xla_training_step.py --epochs 3 --num-examples 1024 \
    --output benchmarks/results/xla_training_step.md
python benchmarks/profile_ops.py --model gpt256 --steps 5 --warmup 3 --top 12 \
    --output benchmarks/results/profile_ops.md
python benchmarks/profile_ops.py --model bert --steps 5 --warmup 3 --top 12 \
    --output benchmarks/results/profile_ops.md
python benchmarks/decode_weight_precision.py --output benchmarks/results/decode_weight_precision.md
