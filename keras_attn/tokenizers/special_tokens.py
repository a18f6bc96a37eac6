"""The special tokens every keras-attn tokenizer reserves, with fixed ids.

Every tokenizer puts these seven tokens first, in this order, so models,
packers and decoding loops can use the same ids whatever tokenizer is used:
`[PAD]`=0, `[UNK]`=1, `[BOS]`=2, `[EOS]`=3, `[SEP]`=4, `[CLS]`=5, `[MASK]`=6.
"""

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
BOS_TOKEN = "[BOS]"
EOS_TOKEN = "[EOS]"
SEP_TOKEN = "[SEP]"
CLS_TOKEN = "[CLS]"
MASK_TOKEN = "[MASK]"

SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, SEP_TOKEN, CLS_TOKEN, MASK_TOKEN)

PAD_ID, UNK_ID, BOS_ID, EOS_ID, SEP_ID, CLS_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# Ids that `detokenize` removes: structure, not content. `[UNK]` and `[MASK]`
# stay visible in the text because they stand for content.
STRUCTURAL_IDS = (PAD_ID, BOS_ID, EOS_ID, SEP_ID, CLS_ID)
