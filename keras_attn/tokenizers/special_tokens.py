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

# The roles special tokens play, in the order above. A tokenizer of a
# pretrained checkpoint keeps the checkpoint's ids for them instead
# (`Tokenizer.special_token_ids`); roles may share an id (GPT-2's one
# `<|endoftext|>` is its start, end and padding).
SPECIAL_ROLES = ("pad", "unk", "bos", "eos", "sep", "cls", "mask")
DEFAULT_SPECIAL_TOKEN_IDS = dict(zip(SPECIAL_ROLES, range(len(SPECIAL_TOKENS))))

# Roles whose tokens `detokenize` removes: structure, not content. `[UNK]`
# and `[MASK]` stay visible in the text because they stand for content.
STRUCTURAL_ROLES = ("pad", "bos", "eos", "sep", "cls")
STRUCTURAL_IDS = tuple(DEFAULT_SPECIAL_TOKEN_IDS[role] for role in STRUCTURAL_ROLES)
