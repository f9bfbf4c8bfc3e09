"""``filter_condition``: a small expression language over one point, parsed (never evaluated as code).

Grammar (keywords are case-insensitive)::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | compare
    compare := operand OP operand            OP: == != > >= < <=
    operand := value | metric_name | device_id | unit | tags.<key> | number | 'text' | "text" | true | false

A comparison of different kinds (a number against text, a missing tag against anything but itself) is
false, so a condition never raises on data it meets; only parsing can fail, with the position at fault.
"""

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# What a condition reads of a point: device_id, metric_name, value, unit and tags.
Fields = Mapping[str, Any]
Predicate = Callable[[Fields], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|>=|<=|>|<)
      | (?P<paren>[()])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-:]+)?)
    )""",
    re.VERBOSE,
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_FIELDS = ("value", "metric_name", "device_id", "unit")
_MAX_DEPTH = 32


class ConditionError(ValueError):
    """The condition cannot be parsed; the message says what and at which character."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.lastgroup is None:
            start = len(source) - len(source[pos:].lstrip())
            raise ConditionError(f"unexpected character {source[start]!r} at position {start}")
        out.append(_Tok(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    return out


def _kind(x: object) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "text"
    return "other"


def _comparable(a: object, b: object, op: str) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka == "other":
        return False
    # Booleans and text order only for equality: `true > false` says nothing a user means.
    return ka == "number" or op in ("==", "!=")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.toks = _tokens(source)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ConditionError(f"unexpected end of condition at position {len(self.source)}")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.toks:
            raise ConditionError("condition is empty")
        pred = self.expr()
        extra = self.peek()
        if extra is not None:
            raise ConditionError(f"unexpected {extra.text!r} at position {extra.pos}")
        return pred

    def expr(self) -> Predicate:
        terms = [self.conj()]
        while self.keyword("or"):
            terms.append(self.conj())
        if len(terms) == 1:
            return terms[0]
        return lambda p: any(t(p) for t in terms)

    def conj(self) -> Predicate:
        terms = [self.unary()]
        while self.keyword("and"):
            terms.append(self.unary())
        if len(terms) == 1:
            return terms[0]
        return lambda p: all(t(p) for t in terms)

    def unary(self) -> Predicate:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ConditionError(f"condition nests deeper than {_MAX_DEPTH} levels")
        try:
            if self.keyword("not"):
                inner = self.unary()
                return lambda p: not inner(p)
            tok = self.peek()
            if tok is not None and tok.kind == "paren" and tok.text == "(":
                self.i += 1
                inner = self.expr()
                close = self.take()
                if close.text != ")":
                    raise ConditionError(f"expected ')' at position {close.pos}, got {close.text!r}")
                return inner
            return self.compare()
        finally:
            self.depth -= 1

    def compare(self) -> Predicate:
        left = self.operand()
        op_tok = self.take()
        if op_tok.kind != "op":
            raise ConditionError(
                f"expected a comparison (== != > >= < <=) at position {op_tok.pos}, got {op_tok.text!r}"
            )
        right = self.operand()
        op, fn = op_tok.text, _OPS[op_tok.text]

        def check(point: Fields) -> bool:
            a, b = left(point), right(point)
            return _comparable(a, b, op) and bool(fn(a, b))

        return check

    def operand(self) -> Callable[[Fields], Any]:
        tok = self.take()
        if tok.kind == "num":
            number = float(tok.text)
            if not math.isfinite(number):
                raise ConditionError(f"number {tok.text!r} at position {tok.pos} is out of range")
            return lambda _p: number
        if tok.kind == "str":
            text = _unquote(tok.text)
            return lambda _p: text
        if tok.kind == "name":
            return self.name(tok)
        raise ConditionError(f"expected a field or a literal at position {tok.pos}, got {tok.text!r}")

    def name(self, tok: _Tok) -> Callable[[Fields], Any]:
        lowered = tok.text.lower()
        if lowered in ("true", "false"):
            flag = lowered == "true"
            return lambda _p: flag
        if tok.text.startswith("tags."):
            key = tok.text[len("tags.") :]
            return lambda p: (p.get("tags") or {}).get(key)
        if tok.text in _FIELDS:
            field = tok.text
            return lambda p: p.get(field)
        raise ConditionError(
            f"unknown name {tok.text!r} at position {tok.pos}: use value, metric_name, device_id, unit, "
            "tags.<key>, a number, a quoted text, true or false"
        )


def parse_condition(source: str) -> Predicate:
    """Compile ``source`` into a predicate over a point's fields; ConditionError says what is wrong and where."""
    return _Parser(source).parse()
