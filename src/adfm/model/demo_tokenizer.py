"""The tokenizer the tiny demo models share: one byte-level BPE, trained offline on the words our
prompts and responses use (adfm.model.demo_corpus), with each family's special tokens and chat
template on top.

All three demo models (adfm.model.demo, demo_internvl, demo_llava_next) wrap it in a
Qwen2Tokenizer: Qwen2.5-VL and InternVL3 use Qwen2's tokenizer for real, and LLaVA-NeXT's processor
accepts any tokenizer that knows its `<image>` token. Training is seeded by construction (the BPE
trainer is deterministic on a fixed corpus), so every build gives the same vocabulary.
"""

from __future__ import annotations

import json

from adfm.model import demo_corpus

DEFAULT_VOCAB_SIZE = 1024


def _trained_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocabulary (in id order) and merges, trained on the demo corpus (milliseconds)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Qwen2's normaliser and pre-tokeniser, so that training sees the splits the tokenizer will use.
    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(demo_corpus.corpus(), trainer=trainer)
    state = json.loads(tokenizer.to_str())["model"]
    vocab = dict(sorted(state["vocab"].items(), key=lambda item: item[1]))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return vocab, merges


def build_tokenizer(
    special_tokens: list[str],
    *,
    eos_token: str,
    pad_token: str,
    chat_template: str,
    named_tokens: dict[str, str] | None = None,
    model_max_length: int = 32768,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
):
    """A Qwen2Tokenizer over the shared BPE, with `special_tokens` appended in the given order.

    `named_tokens` ({"start_image_token": "<img>", ...}) become attributes of the tokenizer
    (`tokenizer.start_image_token`, `..._id`) and are saved in tokenizer_config.json, the way
    processors such as InternVLProcessor look their tokens up; each must be one of `special_tokens`.
    """
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _trained_bpe(vocab_size)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=None,
        pad_token=None,
        model_max_length=model_max_length,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    # Special tokens right after the BPE vocabulary, in the family's order (as Qwen's 151643.. follow
    # its BPE). Named only afterwards: named in the constructor, they would be added first, out of order.
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    if named_tokens:
        missing = set(named_tokens.values()) - set(special_tokens)
        if missing:
            raise ValueError(f"named tokens {sorted(missing)} are not among the special tokens")
        tokenizer._set_model_specific_special_tokens(named_tokens)
    tokenizer.eos_token = eos_token
    tokenizer.pad_token = pad_token
    tokenizer.chat_template = chat_template
    return tokenizer


def special_token_ids(tokenizer, tokens: list[str]) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}


def padded_vocab_size(tokenizer, multiple: int = 64) -> int:
    """The embedding rows: the tokenizer's length rounded up, as the real checkpoints pad theirs
    (Qwen2.5's 152064, LLaVA-v1.6-34B's 64064)."""
    size = len(tokenizer)
    return size + (-size) % multiple
