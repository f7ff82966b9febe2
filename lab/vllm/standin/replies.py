"""The "model": deterministic replies shaped like DeepSeek V3.2's output (answers, filler text on the topic, tool
calls, reasoning), and the script of a reply: its tokens as the reasoning and tool parsers sort them."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from .text import content_words, format_number, message_text, split_tokens
from .tool_calls import DSML, choose_tool, derive_arguments, dsml_markup, streamable_arguments

THINK_END = "</think>"
FILLER_WORDS = """model system answer result value approach method step detail example context reason process data
question point case time way part number idea form level term area fact rate change result structure pattern
simple clear useful common careful direct quick general specific main first next final small large important
explain describe consider compare check note follow show depend include provide apply improve measure""".split()
FILLER_TEMPLATES = (
    "The {0} depends on the {1} and the {2}.",
    "A {3} {0} usually makes the {1} easier to {4}.",
    "In this case, the {0} is {3} and the {1} is {5}.",
    "It helps to {4} the {0} before looking at the {1}.",
    "Each {0} has a {3} {1}, so the {2} stays {5}.",
    "We can {4} the {0} with a {3} {1}.",
)
GIBBERISH = [" ilio", "ANA", ",,", " stit", "Ġ", "tok", "]]", " quer", "Prox", " wm", "ela", "的", "ss", "??", " norm",
             "uxt", " alg", "->", "ynam", " ket", "obe"]  # what a model without (all) its weights emits


def _sentence_pool(size: int = 256) -> list[tuple[str, int]]:
    rng = random.Random(20251)
    pool = []
    for _ in range(size):
        text = rng.choice(FILLER_TEMPLATES).format(*(rng.choice(FILLER_WORDS) for _ in range(6)))
        pool.append((text, len(split_tokens(" " + text))))
    return pool


SENTENCES = _sentence_pool()


class Filler:
    """Deterministic sentences for answers of any length (drawn from a fixed pool: cheap per request)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def sentence(self) -> str:
        return SENTENCES[self.rng.randrange(len(SENTENCES))][0]

    def text(self, tokens: int) -> str:
        parts: list[str] = []
        count = 0
        while count < tokens:
            text, length = SENTENCES[self.rng.randrange(len(SENTENCES))]
            parts.append(text)
            count += length
        return " ".join(parts)


@dataclass
class Reply:
    reasoning: str
    content: str
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments JSON)
    garbled: bool = False


def average_speed_reply(text: str) -> Reply | None:
    legs = re.findall(r"(\d+(?:\.\d+)?)\s*(km|kilometers|kilometres|miles|mi)\s+in\s+(\d+(?:\.\d+)?)\s*(?:hours?|h)\b",
                      text, flags=re.IGNORECASE)
    if not legs or "speed" not in text.lower():
        return None
    unit = "km" if legs[0][1].lower().startswith("k") else "mi"
    distance = sum(float(leg[0]) for leg in legs)
    hours = sum(float(leg[2]) for leg in legs)
    speed = format_number(distance / hours)
    steps_d = " + ".join(f"{format_number(float(leg[0]))} {unit}" for leg in legs)
    steps_t = " + ".join(f"{format_number(float(leg[2]))} h" for leg in legs)
    reasoning = (f"The train covers {len(legs)} legs. Average speed is total distance divided by total time, not the "
                 f"average of the two speeds. Total distance: {steps_d} = {format_number(distance)} {unit}. "
                 f"Total time: {steps_t} = {format_number(hours)} h. So the average speed is "
                 f"{format_number(distance)} / {format_number(hours)} = {speed} {unit}/h.")
    content = (f"**Step 1 – total distance:** {steps_d} = {format_number(distance)} {unit}\n"
               f"**Step 2 – total time:** {steps_t} = {format_number(hours)} h\n"
               f"**Step 3 – average speed:** {format_number(distance)} {unit} ÷ {format_number(hours)} h = "
               f"**{speed} {unit}/h**\n\nThe average speed is **{speed} {unit}/h**.")
    return Reply(reasoning=reasoning, content=content)


def arithmetic_reply(text: str) -> Reply | None:
    match = re.search(r"(-?\d+(?:\.\d+)?)\s*([+\-*/x×÷])\s*(-?\d+(?:\.\d+)?)", text)
    if not match or not re.search(r"\b(what|calculate|compute|how much)\b", text, re.IGNORECASE):
        return None
    left, operator, right = float(match.group(1)), match.group(2), float(match.group(3))
    if operator in "/÷" and right == 0:
        return None
    result = {"+": left + right, "-": left - right, "*": left * right, "x": left * right, "×": left * right,
              "/": left / right if right else 0.0, "÷": left / right if right else 0.0}[operator]
    expression = f"{match.group(1)} {operator} {match.group(3)}"
    return Reply(reasoning=f"Compute {expression}. The result is {format_number(result)}.",
                 content=f"{expression} = **{format_number(result)}**")


def identity_reply(text: str) -> Reply | None:
    if not re.search(r"\b(who are you|what are you|your name|hello|hi|hey)\b", text, re.IGNORECASE):
        return None
    return Reply(reasoning="The user greets me and asks who I am. I should introduce myself briefly.",
                 content="Hello! I'm DeepSeek-V3.2, an AI assistant created by DeepSeek. I can help with questions, "
                         "writing, analysis, math and code. How can I help you today?")


def generic_reply(text: str, seed: int) -> Reply:
    filler = Filler(seed)
    topic = " ".join(content_words(text)[:5]) or "this topic"
    length = filler.rng.randint(60, 220)
    reasoning = (f"The user is asking about {topic}. I should give a clear, well-structured answer. "
                 + filler.text(filler.rng.randint(25, 60)))
    content = f"Here is an overview of {topic}. " + filler.text(length)
    return Reply(reasoning=reasoning, content=content)


def compose_reply(messages: list[dict], tools: list[dict] | None, tool_choice, use_tools: bool, garbled: bool,
                  seed: int) -> Reply:
    user_text = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"),
                     message_text(messages[-1]) if messages else "")
    if garbled:
        return Reply(reasoning="", content="", garbled=True)
    if use_tools and tools:
        tool = choose_tool(tools, tool_choice, user_text)
        if tool is not None:
            name = str((tool.get("function") or {}).get("name", ""))
            arguments = derive_arguments(tool, user_text)
            reasoning = (f"The user's request can be answered with the {name} tool. I will call it with "
                         + ", ".join(f"{key}={value}" for key, value in arguments.items()) + ".")
            return Reply(reasoning=reasoning, content="",
                         tool_calls=[(name, json.dumps(arguments, ensure_ascii=False))])
    for handler in (average_speed_reply, arithmetic_reply, identity_reply):
        reply = handler(user_text)
        if reply is not None:
            return reply
    return generic_reply(user_text, seed)


# Kinds of output tokens, as the reasoning and tool parsers sort them.
REASONING, CONTENT, MARKUP, EOS = "reasoning", "content", "markup", "eos"


@dataclass
class Piece:
    kind: str
    text: str
    tool_start: tuple[int, str] | None = None  # (index, name): the tool parser emits the call's header here
    tool_args: tuple[int, str] | None = None  # (index, JSON text): ... a piece of its arguments here
    tool_end: bool = False  # ... and, with the last piece, the call is complete


class Script:
    """The token sequence a request produces: the reply, then EOS; past EOS (ignore_eos, min_tokens) more text."""

    def __init__(self, reply: Reply, *, thinking: bool, splits_reasoning: bool, seed: int) -> None:
        self.filler = Filler(seed ^ 0x5EED)
        self.garbled = reply.garbled
        self.after_tools = bool(reply.tool_calls)
        self.pieces: list[Piece] = []
        if reply.garbled:
            self.eos_index = None  # a model without its weights does not find EOS
            self.thinking_garbled = thinking and splits_reasoning
            return
        if thinking:
            kind = REASONING if splits_reasoning else CONTENT
            self.pieces += [Piece(kind, token) for token in split_tokens(reply.reasoning)]
            self.pieces.append(Piece(MARKUP if splits_reasoning else CONTENT, THINK_END))
        for index, (name, arguments) in enumerate(reply.tool_calls):
            self._add_tool_call(index, name, arguments)
        if not reply.tool_calls:
            self.pieces += [Piece(CONTENT, token) for token in split_tokens(reply.content)]
        self.eos_index = len(self.pieces)
        self.pieces.append(Piece(EOS, ""))

    def _add_tool_call(self, index: int, name: str, arguments: str) -> None:
        markup = dsml_markup(name, arguments)
        # DSML tags are special tokens of the DeepSeek V3.2 tokenizer; the text between them is ordinary text.
        tokens = [token for part in re.split(r"(</?" + DSML + r"[a-z_]+)", markup) if part
                  for token in ([part] if part.startswith(("<" + DSML, "</" + DSML)) else split_tokens(part))]
        # vLLM 0.33's deepseek_v32 parser (parser/engine/parser_engine.py) sends the header with the first token
        # after the invoke tag, converts the arguments on each token that ends a tag ('>', arg_structural_chars)
        # and streams the part of the JSON that more text cannot change; the rest comes when the invoke closes.
        header_end = markup.index('">') + 2
        params = list(json.loads(arguments).items())
        checkpoints, cursor = [], header_end
        for position, (key, value) in enumerate(params):
            cursor = markup.index('">', markup.index(f'<{DSML}parameter name="{key}"', cursor)) + 2
            opened = params[:position] + ([(key, "")] if isinstance(value, str) else [])
            checkpoints.append((cursor, streamable_arguments(opened)))
            cursor = markup.index(f"</{DSML}parameter>", cursor) + len(f"</{DSML}parameter>")
            checkpoints.append((cursor, streamable_arguments(params[:position + 1])))
        checkpoints.append((markup.index(f"</{DSML}invoke>") + len(f"</{DSML}invoke>"), arguments))
        consumed, announced, streamed = 0, False, ""
        for token in tokens:
            start, consumed = consumed, consumed + len(token)
            piece = Piece(MARKUP, token)
            if start >= header_end and not announced:
                piece.tool_start, announced = (index, name), True
            reached = [text for end, text in checkpoints if end <= consumed]
            if reached and len(reached[-1]) > len(streamed):
                piece.tool_args, streamed = (index, reached[-1][len(streamed):]), reached[-1]
                piece.tool_end = streamed == arguments
            self.pieces.append(piece)

    def piece(self, index: int) -> Piece:
        while index >= len(self.pieces):
            if self.garbled:
                kind = REASONING if self.thinking_garbled else CONTENT
                self.pieces.append(Piece(kind, self.filler.rng.choice(GIBBERISH)))
            else:
                # Text past EOS: after a tool call the parser drops it; otherwise it is more content.
                kind = MARKUP if self.after_tools else CONTENT
                self.pieces += [Piece(kind, token) for token in split_tokens(" " + self.filler.sentence())]
        return self.pieces[index]
