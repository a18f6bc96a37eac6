"""Does decoding get faster with lighter weights? Generation speed by weight format.

The generation benchmark's shape and prompts (`generation_speed.py`: width 256,
4 layers, vocabulary 8192, 16-token prompts, 256 new tokens, greedy, XLA),
keras-attn only, with the weights kept three ways: float32 variables cast to
bfloat16 at every step (`mixed_bfloat16`, the benchmark's best setting),
bfloat16 variables (`bfloat16` policy: nothing to cast), and Keras' int8
weight quantization (`model.quantize("int8")`). Batch 1 reads every weight
once per new token, so if memory traffic bounded the loop, lighter weights
would speed it up.

    python benchmarks/decode_weight_precision.py [--repeats 3] [--output FILE.md]
    python benchmarks/decode_weight_precision.py --smoke
"""

import argparse
import os
import sys

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generation_speed  # noqa: E402
import reporting  # noqa: E402

WEIGHTS = [("mixed_bfloat16", None), ("bfloat16", None), ("float32", "int8")]


def tokens_per_second(shape, policy, quantize, batch, new_tokens, repeats, xla):
    from keras_attn.models import DecoderBackbone, Generator
    from keras_attn.tokenizers import ByteTokenizer

    keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)
    try:
        length = 16 + new_tokens
        backbone = DecoderBackbone(sequence_length=length, dropout=0.0, **shape)
        generator = Generator(backbone, ByteTokenizer())
        generator.compile(jit_compile=xla)
        if quantize:
            generator.quantize(quantize)
        token_ids, padding_mask = generation_speed.prompts(batch, 16, length,
                                                           shape["vocabulary_size"])

        def generate(token_ids, padding_mask):
            return generator.generate_ids(token_ids, padding_mask, stop_token_ids=(),
                                          max_new_tokens=new_tokens)

        _, seconds = generation_speed.measure(generate, token_ids, padding_mask, repeats)
    finally:
        keras.config.set_dtype_policy("float32")
    return batch * new_tokens / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny shape, no XLA")
    parser.add_argument("--output", help="append the table to this markdown file")
    args = parser.parse_args(argv)
    shape = generation_speed.SMOKE_SHAPE if args.smoke else generation_speed.SHAPE
    new_tokens, xla, batches = (4, False, (1,)) if args.smoke else (256, True, (1, 8))
    rows = []
    for batch in batches:
        base = None
        for policy, quantize in WEIGHTS:
            rate = tokens_per_second(shape, policy, quantize, batch, new_tokens,
                                     args.repeats, xla)
            base = base or rate
            name = f"{policy} + {quantize} weights" if quantize else f"{policy} policy"
            rows.append(f"| {batch} | {name} | {rate:.1f} | {rate / base:.2f}x |")
            print(rows[-1], flush=True)
    text = "\n".join([
        f"{reporting.machine_line('decode_weight_precision.py', argv)}. keras-attn `Generator`, "
        f"{new_tokens} new tokens, greedy, XLA {'on' if xla else 'off'}; median of "
        f"{args.repeats} calls after the first.",
        "",
        "| batch | weights | new tokens/s | vs mixed_bfloat16 |",
        "| --- | --- | --- | --- |",
        *rows,
    ]) + "\n"
    reporting.emit(text, args.output)
    return rows


if __name__ == "__main__":
    main()
