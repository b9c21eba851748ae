"""Read ``nginx -T`` output into one tree of directives, each with its file and line.

``nginx -T`` prints every configuration file it read once, each after a line
``# configuration file PATH:``; the first is the main file. The tree starts at the main file
and replaces each ``include`` by the directives of the dumped files its pattern matches
(relative patterns from the main file's directory, as nginx resolves them), in name order,
so a snippet included in three locations appears in all three. The ``include`` directive
itself stays in the tree (with the files it matched) for messages. Comments are kept on the
block they sit in, for the "explicitly public" marker.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass, field

from ..errors import AgentError

DUMP_HEADER = re.compile(r"^# configuration file (?P<path>.+):\s*$")
MAX_INCLUDE_DEPTH = 16


class DumpUnreadable(AgentError, ValueError):
    """The text is not ``nginx -T`` output (no ``# configuration file`` line)."""


@dataclass
class Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None  # None: a simple directive ending in ';'
    comments: list[str] = field(default_factory=list)  # inside the block, or on its line
    included: list[str] = field(default_factory=list)  # an include's matched files

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def text(self) -> str:
        return " ".join([self.name, *self.args])

    def children(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def first(self, name: str) -> Directive | None:
        found = self.children(name)
        return found[0] if found else None


def split_dump(text: str) -> tuple[str, dict[str, str]]:
    """The main file's path and every dumped file's text."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    main = ""
    for line in text.splitlines():
        header = DUMP_HEADER.match(line)
        if header:
            path = header.group("path")
            main = main or path
            current = files.setdefault(path, [])
            continue
        if current is not None:
            current.append(line)
    if not main:
        raise DumpUnreadable("no '# configuration file PATH:' line: not the output of nginx -T")
    return main, {path: "\n".join(lines) + "\n" for path, lines in files.items()}


@dataclass
class _Token:
    kind: str  # "word", "{", "}", ";", "#"
    text: str
    line: int


def tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            tokens.append(_Token("#", text[i + 1:end].strip(), line))
            i = end
        elif ch in "{};":
            tokens.append(_Token(ch, ch, line))
            i += 1
        elif ch in "\"'":
            start_line, quote, i = line, ch, i + 1
            out: list[str] = []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                out.append(text[i])
                i += 1
            tokens.append(_Token("word", "".join(out), start_line))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in ";{}":
                if text[i] == "$" and i + 1 < n and text[i + 1] == "{":
                    close = text.find("}", i)
                    i = n if close < 0 else close
                i += 1
            tokens.append(_Token("word", text[start:i], line))
    return tokens


def parse(text: str, file: str) -> list[Directive]:
    """One file's directives (includes not yet resolved)."""
    tokens = tokenize(text)
    pos = 0

    def block(depth: int) -> list[Directive]:
        nonlocal pos
        out: list[Directive] = []
        words: list[_Token] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok.kind == "#":
                out.append(Directive("#", [tok.text], file, tok.line))
            elif tok.kind == "word":
                words.append(tok)
            elif tok.kind == ";":
                if words:
                    out.append(Directive(words[0].text, [w.text for w in words[1:]], file,
                                         words[0].line))
                words = []
            elif tok.kind == "{":
                if not words:
                    continue
                head = Directive(words[0].text, [w.text for w in words[1:]], file,
                                 words[0].line)
                words = []
                if pos < len(tokens) and tokens[pos].kind == "#" \
                        and tokens[pos].line == tok.line:
                    head.comments.append(tokens[pos].text)
                    pos += 1
                head.block = block(depth + 1)
                head.comments += [d.args[0] for d in head.block if d.name == "#"]
                head.block = [d for d in head.block if d.name != "#"]
                out.append(head)
            elif tok.kind == "}":
                if depth > 0:
                    return out
        return out

    return block(0)


@dataclass
class Config:
    """The effective configuration: the main file with includes resolved."""

    main: str
    files: dict[str, str]
    tree: list[Directive]
    comments: list[str]  # top-level comments of the main file


def load_dump(text: str) -> Config:
    main, files = split_dump(text)
    parsed = {path: parse(body, path) for path, body in files.items()}
    prefix = posixpath.dirname(main)

    def expand(directives: list[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.name == "#":
                out.append(d)
                continue
            if d.name == "include" and d.block is None and d.args and depth < MAX_INCLUDE_DEPTH:
                pattern = d.args[0]
                if not pattern.startswith("/"):
                    pattern = posixpath.join(prefix, pattern)
                matched = sorted(p for p in parsed if fnmatch.fnmatchcase(p, pattern))
                include = Directive(d.name, d.args, d.file, d.line, included=matched)
                out.append(include)
                for path in matched:
                    out.extend(expand(parsed[path], depth + 1))
                continue
            copy = Directive(d.name, d.args, d.file, d.line, comments=list(d.comments))
            if d.block is not None:
                inner = expand(d.block, depth)
                copy.comments += [c.args[0] for c in inner if c.name == "#"]
                copy.block = [c for c in inner if c.name != "#"]
            out.append(copy)
        return out

    tree = expand(parsed.get(main, []), 0)
    return Config(main, files, [d for d in tree if d.name != "#"],
                  [d.args[0] for d in tree if d.name == "#"])


def walk(directives: list[Directive], name: str) -> list[Directive]:
    """Every directive called ``name`` at any depth, in order."""
    found: list[Directive] = []
    for d in directives:
        if d.name == name:
            found.append(d)
        if d.block:
            found.extend(walk(d.block, name))
    return found
