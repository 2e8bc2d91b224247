"""Agent-sized requests for `make bench`: deterministic, seeded, shaped like a coding agent's.

A coding agent (Claude Code, Codex CLI) sends on every turn a long system prompt, a dozen
tool definitions and the whole conversation so far: the user's request, then the
assistant's tool calls and their results (files read, commands run), turn after turn.
This module builds such conversations from one seeded corpus of prose and code, renders
them for each front door (chat completions, Anthropic messages, Responses), and varies
them per request the way an agent does:

- "growing": each virtual user keeps a session whose history grows by one tool call and
  its result per request (the same prefix every time, as an agent resends it), and starts
  a new session (new texts throughout) every `SESSION_TURNS` requests; the prompt stays
  around the target size;
- "fresh": every request is a new conversation of the target size (no text repeats), so
  nothing a gateway keeps between requests helps.

Every text is a slice of the corpus at a seeded offset, so building a 120k-token body
costs the load generator a memory copy and one `orjson.dumps`, not a text generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

DOORS = ("chat", "messages", "responses")
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
# The bytes that only a complete, successful stream of each door contains.
DONE_MARKERS = {"chat": b"[DONE]", "messages": b"message_stop", "responses": b"response.completed"}
SESSION_TURNS = 16
CORPUS_CHARS = 3_000_000
# o200k_base on this corpus, measured by `calibrate()` (prose and code, about 4.3 chars a
# token); only the starting guess: the sizes are checked against the real tokenizer.
CHARS_PER_TOKEN = 4.3

PROSE = (
    "the request handler reads configuration from the environment and validates each "
    "field before the worker starts so a missing value fails early with a clear message "
    "when the cache is cold every lookup falls through to the database which is slower "
    "but always correct the retry policy waits with exponential backoff and gives up "
    "after five attempts logging the last error for the operator to inspect later "
    "tests cover the happy path the empty input the oversized payload and the timeout "
    "we keep the public interface small and move the parsing into a helper module so "
    "that the view stays readable and the edge cases are tested in one place instead "
    "of three migrations add the column with a default then backfill in batches then "
    "drop the default which avoids a long lock on the table during the deploy window "
    "account balance ledger entry settlement hold reservation credit invoice customer "
    "stream chunk token usage model route provider fallback latency budget quota limit"
)
NAMES = (
    "user account ledger entry balance request response config cache client session "
    "token stream chunk usage model route provider retry timeout payload record queue "
    "worker handler parser buffer index offset limit window counter price invoice"
)
WORDS = PROSE.split()
IDENTIFIERS = NAMES.split()
TOOLS = (
    ("Bash", "command", "Runs a shell command in the project's working directory."),
    ("Read", "file_path", "Reads a file from the local filesystem, with line numbers."),
    ("Edit", "file_path", "Replaces an exact string in a file with another string."),
    ("Write", "file_path", "Writes a file to the local filesystem, replacing it."),
    ("Glob", "pattern", "Finds files by a glob pattern, newest first."),
    ("Grep", "pattern", "Searches file contents with a regular expression."),
    ("LS", "path", "Lists the files and directories in a directory."),
    ("WebFetch", "url", "Fetches a URL and answers a question about its content."),
    ("TodoWrite", "todos", "Creates and updates the task list for this session."),
    ("Task", "prompt", "Starts a sub-agent to work on a self-contained task."),
    ("NotebookEdit", "notebook_path", "Replaces the source of a Jupyter notebook cell."),
    ("MultiEdit", "file_path", "Makes several replacements in one file at once."),
)


def _prose(rng: random.Random, words: int) -> str:
    out: list[str] = []
    while words > 0:
        length = rng.randint(8, 24)
        sentence = rng.choices(WORDS, k=min(length, words))
        sentence[0] = sentence[0].capitalize()
        out.append(" ".join(sentence) + rng.choice(".........,;:?"))
        words -= length
    return " ".join(out)


def _code(rng: random.Random, lines: int) -> str:
    out: list[str] = []
    indent = 0
    for number in range(lines):
        a, b, c = rng.choices(IDENTIFIERS, k=3)
        pick = rng.random()
        if pick < 0.15 or indent == 0:
            indent = 4
            out.append(f"def {a}_{b}(self, {c}: int, *, {b}_{c}: str | None = None) -> dict:")
        elif pick < 0.35:
            out.append(" " * indent + f"if {a}.{b} is None or {c} > {number}:")
            indent = min(indent + 4, 16)
        elif pick < 0.5:
            out.append(" " * indent + f'raise ValueError(f"{a} {b}: {{{c}!r}} is not valid")')
            indent = max(indent - 4, 4)
        elif pick < 0.75:
            out.append(" " * indent + f"{a}_{b} = self.{c}.get({b}_{c}, {number})")
        else:
            out.append(" " * indent + f"return {{'{a}': {b}, '{c}': {a}_{b}[{number % 7}]}}")
    return "\n".join(out)


def build_corpus(seed: int, chars: int = CORPUS_CHARS) -> str:
    """Prose paragraphs and numbered code listings, about `chars` long, from `seed`."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < chars:
        if rng.random() < 0.5:
            piece = _prose(rng, rng.randint(40, 160))
        else:
            body = _code(rng, rng.randint(10, 40)).splitlines()
            piece = "\n".join(f"{n + 1:>5}\t{line}" for n, line in enumerate(body))
        parts.append(piece)
        total += len(piece) + 2
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Turn:
    """One step of the conversation: a user message, or a tool call and its result."""

    kind: str  # "user" or "tool"
    text: str  # the user's message, or the assistant's words before the call
    call_id: str = ""
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = ""


@dataclass(frozen=True)
class Conversation:
    system: str
    tools: list[tuple[str, str, str, str]]  # (name, argument, description, argument doc)
    turns: list[Turn]
    rich_tools: bool = True


class Corpus:
    """A seeded corpus and the line starts that texts are cut at."""

    def __init__(self, seed: int) -> None:
        self.text = build_corpus(seed)
        self.starts = [0]
        at = self.text.find("\n")
        while at != -1:
            self.starts.append(at + 1)
            at = self.text.find("\n", at + 1)

    def cut(self, rng: random.Random, chars: int) -> str:
        chars = max(1, min(chars, len(self.text) // 2))
        start = self.starts[rng.randrange(len(self.starts))]
        if start + chars > len(self.text):
            start = max(0, len(self.text) - chars)
        return self.text[start : start + chars]


@dataclass
class Shape:
    """Where a prompt of `tokens` goes: system prompt, tool definitions, history."""

    tokens: int
    chars_per_token: float = CHARS_PER_TOKEN

    @property
    def chars(self) -> int:
        return int(self.tokens * self.chars_per_token)

    @property
    def system_chars(self) -> int:
        return max(300, min(self.chars // 10, 40_000))

    @property
    def tool_doc_chars(self) -> int:
        return max(0, min(self.chars // 150, 2_000))

    @property
    def turn_chars(self) -> int:
        """One tool call with its result: a file read, a command's output."""
        return max(40, min(self.chars // 150, 3_000))

    @property
    def rich_tools(self) -> bool:
        """Full schemas (three documented parameters) unless the prompt is small."""
        return self.tokens >= 5_000

    def history_turns(self) -> int:
        spent = self.system_chars + 12 * (self.tool_doc_chars + (300 if self.rich_tools else 120))
        return max(1, (self.chars - spent) // (self.turn_chars + 120))


def conversation(corpus: Corpus, shape: Shape, rng: random.Random, turns: int) -> Conversation:
    """A session: system prompt, 12 tools, a user request and `turns` tool round trips."""
    system = "You are an interactive coding agent working in the user's repository.\n\n"
    system += corpus.cut(rng, shape.system_chars)
    tools = [
        (name, argument, f"{summary}\n{corpus.cut(rng, shape.tool_doc_chars)}".strip(), summary)
        for name, argument, summary in TOOLS
    ]
    size = shape.turn_chars
    history = [Turn("user", corpus.cut(rng, min(400, size)))]
    for number in range(turns):
        name, argument, _ = TOOLS[rng.randrange(len(TOOLS))]
        if number and rng.random() < 0.1:
            history.append(Turn("user", corpus.cut(rng, 200)))
        said = rng.randint(20, 80) if shape.tokens < 5_000 else rng.randint(40, 160)
        words = corpus.cut(rng, said)
        value = corpus.cut(rng, 60).replace("\n", " ")
        history.append(
            Turn(
                "tool",
                words,
                call_id=f"call_{rng.getrandbits(48):012x}",
                tool=name,
                arguments={argument: value},
                result=corpus.cut(rng, rng.randint(size // 2, size * 3 // 2)),
            )
        )
    return Conversation(system, tools, history, shape.rich_tools)


def _schema(argument: str, doc: str, rich: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {argument: {"type": "string", "description": doc}}
    if rich:
        properties["timeout"] = {"type": "integer", "description": "Milliseconds to wait."}
        properties["description"] = {"type": "string", "description": "Why, in a few words."}
    return {
        "type": "object",
        "properties": properties,
        "required": [argument],
        "additionalProperties": False,
    }


def render(door: str, talk: Conversation, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The request body a client of `door` sends for `talk`, streamed."""
    rich = talk.rich_tools
    if door == "chat":
        messages: list[dict[str, Any]] = [{"role": "system", "content": talk.system}]
        for turn in talk.turns:
            if turn.kind == "user":
                messages.append({"role": "user", "content": turn.text})
                continue
            call = {"name": turn.tool, "arguments": orjson.dumps(turn.arguments).decode()}
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.text,
                    "tool_calls": [{"id": turn.call_id, "type": "function", "function": call}],
                }
            )
            messages.append({"role": "tool", "tool_call_id": turn.call_id, "content": turn.result})
        return {
            "model": model,
            "messages": messages,
            "tools": [
                {
                    "type": "function",
                    "function": {"name": n, "description": d, "parameters": _schema(a, s, rich)},
                }
                for n, a, d, s in talk.tools
            ],
            "max_tokens": max_tokens,
            "stream": True,
        }
    if door == "messages":
        anthropic: list[dict[str, Any]] = []

        def user(block: dict[str, Any]) -> None:
            if anthropic and anthropic[-1]["role"] == "user":
                anthropic[-1]["content"].append(block)
            else:
                anthropic.append({"role": "user", "content": [block]})

        for turn in talk.turns:
            if turn.kind == "user":
                user({"type": "text", "text": turn.text})
                continue
            anthropic.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": turn.text},
                        {
                            "type": "tool_use",
                            "id": turn.call_id,
                            "name": turn.tool,
                            "input": turn.arguments,
                        },
                    ],
                }
            )
            user({"type": "tool_result", "tool_use_id": turn.call_id, "content": turn.result})
        return {
            "model": model,
            "system": talk.system,
            "messages": anthropic,
            "tools": [
                {"name": n, "description": d, "input_schema": _schema(a, s, rich)}
                for n, a, d, s in talk.tools
            ],
            "max_tokens": max_tokens,
            "stream": True,
        }
    if door == "responses":
        items: list[dict[str, Any]] = []
        for turn in talk.turns:
            if turn.kind == "user":
                content = [{"type": "input_text", "text": turn.text}]
                items.append({"type": "message", "role": "user", "content": content})
                continue
            said = [{"type": "output_text", "text": turn.text}]
            items.append({"type": "message", "role": "assistant", "content": said})
            items.append(
                {
                    "type": "function_call",
                    "call_id": turn.call_id,
                    "name": turn.tool,
                    "arguments": orjson.dumps(turn.arguments).decode(),
                }
            )
            items.append(
                {"type": "function_call_output", "call_id": turn.call_id, "output": turn.result}
            )
        return {
            "model": model,
            "instructions": talk.system,
            "input": items,
            "tools": [
                {"type": "function", "name": n, "description": d, "parameters": _schema(a, s, rich)}
                for n, a, d, s in talk.tools
            ],
            "max_output_tokens": max_tokens,
            "store": False,
            "stream": True,
        }
    raise ValueError(f"unknown door {door!r}")


class Workload:
    """The bodies one target gets for one scenario: per virtual user, per request.

    Two targets given workloads with the same arguments get the same bodies in the same
    order, so both gateways see exactly the same agent traffic.
    """

    def __init__(
        self,
        corpus: Corpus,
        *,
        door: str,
        tokens: int,
        variation: str,
        seed: int,
        model: str,
        max_tokens: int,
        chars_per_token: float = CHARS_PER_TOKEN,
    ) -> None:
        if variation not in ("growing", "fresh"):
            raise ValueError(f"unknown variation {variation!r}")
        self.corpus = corpus
        self.door = door
        self.shape = Shape(tokens, chars_per_token)
        self.variation = variation
        self.seed = seed
        self.model = model
        self.max_tokens = max_tokens
        self.sent: dict[int, int] = {}
        self.sessions: dict[int, tuple[int, Conversation]] = {}

    @property
    def session_turns(self) -> int:
        """Requests per session: up to `SESSION_TURNS`, fewer where one turn is a large
        part of a small prompt (the prompt stays within about 10% of its target)."""
        return max(2, min(SESSION_TURNS, self.shape.history_turns() // 4))

    def _start_turns(self) -> int:
        return max(1, self.shape.history_turns() - self.session_turns // 2)

    def conversation_for(self, user: int, number: int) -> Conversation:
        """The conversation of `user`'s request `number` (0, 1, 2, …)."""
        if self.variation == "fresh":
            rng = random.Random(f"{self.seed}/{self.door}/{user}/fresh/{number}")
            return conversation(self.corpus, self.shape, rng, self.shape.history_turns())
        session, turn = divmod(number, self.session_turns)
        cached = self.sessions.get(user)
        if cached is None or cached[0] != session:
            rng = random.Random(f"{self.seed}/{user}/session/{session}")
            turns = self._start_turns() + self.session_turns
            full = conversation(self.corpus, self.shape, rng, turns)
            self.sessions[user] = cached = (session, full)
        full = cached[1]
        tool_turns = [index for index, step in enumerate(full.turns) if step.kind == "tool"]
        end = tool_turns[min(self._start_turns() + turn, len(tool_turns)) - 1] + 1
        return Conversation(full.system, full.tools, full.turns[:end], full.rich_tools)

    def body(self, user: int) -> bytes:
        """The next request body of virtual user `user`."""
        number = self.sent.get(user, 0)
        self.sent[user] = number + 1
        talk = self.conversation_for(user, number)
        return orjson.dumps(render(self.door, talk, model=self.model, max_tokens=self.max_tokens))


def prompt_tokens(body: bytes) -> int:
    """The o200k_base count of a chat completions body, as Switchboard's hold counts it."""
    from gateway.tokens import count_prompt

    request = orjson.loads(body)
    return count_prompt(request["messages"], request.get("tools"))


def fit(corpus: Corpus, tokens: int, seed: int) -> float:
    """The chars per token that make a conversation of `tokens` come out at `tokens`.

    Measured with the real tokenizer on the chat rendering (three passes, each correcting
    the last); a growing session's midpoint and a fresh prompt have this size.
    """
    ratio = CHARS_PER_TOKEN
    for _ in range(3):
        work = Workload(
            corpus,
            door="chat",
            tokens=tokens,
            variation="fresh",
            seed=seed,
            model="m",
            max_tokens=1,
            chars_per_token=ratio,
        )
        ratio *= tokens / prompt_tokens(work.body(0))
    return ratio
