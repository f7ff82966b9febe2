"""Text as the "model" counts it. A token is a word with its leading space, a digit group or a punctuation mark;
prompts are counted at ~4 characters per token. /tokenize and /detokenize invent token ids and pieces (there is no
tokenizer)."""

from __future__ import annotations

import json
import math
import random
import re

TOKEN_RE = re.compile(r"\s*[^\W\d_]+|\s*\d{1,3}|\s*[^\w\s]|\s*_|\s+")
STOPWORDS = set("""a an and are as at be by can could do does for from get give how i in is it me my of on or please
should tell the this to up use what when where which who why will with would you your current now today""".split())


def split_tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def content_words(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z][a-z0-9]+", text.lower()) if word not in STOPWORDS]


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")


# No tokenizer: /tokenize and /detokenize answer with invented ids and pieces. The count is the estimate prompts are
# charged with (usage.prompt_tokens); ids 0 and 1 are DeepSeek V3.2's BOS and EOS, as in its vocabulary.
VOCAB_SIZE = 129280  # DeepSeek V3.2's config.json vocab_size: the range of label_token_ids
SPECIAL_TOKENS = {0: "<｜begin▁of▁sentence｜>", 1: "<｜end▁of▁sentence｜>"}
SYLLABLES = "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro " \
            "ru sa se si so su ta te ti to tu va ve vi vo vu".split()


def invented_token_ids(text: str, count: int, bos: bool) -> list[int]:
    rng = random.Random(text)
    ids = [0] if bos and count else []
    return ids + [rng.randrange(2, VOCAB_SIZE) for _ in range(count - len(ids))]


def token_piece(token_id: int) -> str:
    """The byte-level BPE spelling of an invented token: "Ġ" stands for a leading space."""
    if token_id in SPECIAL_TOKENS:
        return SPECIAL_TOKENS[token_id]
    high, low = divmod(token_id, len(SYLLABLES))
    return ("Ġ" if token_id % 3 == 0 else "") + SYLLABLES[low] + SYLLABLES[high % len(SYLLABLES)]


def chat_prompt_tokens(messages: list[dict], tools: list | None, thinking: bool) -> int:
    """An approximation of the DeepSeek V3.2 encoding (tokenizers/deepseek_v32_encoding.py): BOS, a role token
    per message, ~4 characters per token of content, the tool definitions, and the assistant/think prefix."""
    total = 1 + sum(1 + estimate_tokens(message_text(message)) for message in messages) + 2
    if tools:
        total += 40 + estimate_tokens(json.dumps(tools))
    return total + (1 if thinking else 0)
