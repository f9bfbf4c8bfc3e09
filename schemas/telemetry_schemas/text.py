"""The one rule for text in every HTTP body, and the depth limit for free-form JSON.

Text: valid UTF-8 (msgspec's JSON decoder refuses invalid UTF-8 and lone surrogates before any of this
runs), no NUL character, and a bounded length. PostgreSQL text and jsonb cannot hold NUL, so a string
with one would be accepted, published, and then dead-lettered by every projection: it is refused at
the edge instead, naming the field.

Typed string fields carry the rule in their type (``text_meta``), so msgspec enforces it while decoding
and the OpenAPI document shows it as a pattern; a point's own strings (unit, tags, text value) are
checked by one scan of the request instead, on the ingestion hot path (``codecs.decode_points``).
Free-form JSON (a point's object ``value``, ``metadata``, a query's ``filters``) has no type to carry
it, so ``json_problem`` walks it: no NUL in keys or strings, and at most ``MAX_JSON_DEPTH`` levels of
nesting.
"""

from typing import Any

import msgspec

# A JSON Schema / ECMA-262 pattern and a Python one at once: any characters but NUL.
NO_NUL_PATTERN = r"^[^\u0000]*$"
NUL_REASON = "must not contain the NUL character (\\u0000)"
# Levels of objects/arrays inside a free-form JSON value (the value itself is level 1).
MAX_JSON_DEPTH = 32
DEPTH_REASON = f"JSON nested deeper than {MAX_JSON_DEPTH} levels (the limit for free-form values)"
# Bodies nested deeper than the decoder's own recursion limit cannot be decoded at all (400).
TOO_DEEP_DETAIL = f"body: JSON nested too deeply; free-form values may nest at most {MAX_JSON_DEPTH} levels"


def text_meta(
    max_length: int, *, min_length: int = 0, description: str | None = None, nul_checked_by_scan: bool = False
) -> msgspec.Meta:
    r"""Constraints of a text field: no NUL, ``min_length``..``max_length`` characters.

    ``nul_checked_by_scan``: the field belongs to a point, whose NUL check is one scan of the whole request
    for the escape ``\u0000`` (``codecs.decode_points``); a regex per string would double the cost of
    decoding a batch. The pattern is then only documented (exported JSON Schema), not run by msgspec.
    """
    rule = f"{min_length}-{max_length} characters, no NUL"
    return msgspec.Meta(
        min_length=min_length,
        max_length=max_length,
        pattern=None if nul_checked_by_scan else NO_NUL_PATTERN,
        extra_json_schema={"pattern": NO_NUL_PATTERN} if nul_checked_by_scan else None,
        description=f"{description} ({rule})" if description else rule,
    )


def _too_deep(value: dict[str, Any] | list[Any], depth: int) -> bool:
    # A plain loop with a tuple isinstance: this runs for every point with metadata, most of them flat.
    if depth > MAX_JSON_DEPTH:
        return True
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, (dict, list)) and _too_deep(item, depth + 1):
            return True
    return False


def depth_problem(value: dict[str, Any] | list[Any], field: str) -> tuple[str, str] | None:
    """(field, reason) when a free-form JSON value nests deeper than ``MAX_JSON_DEPTH``; cheap for flat ones."""
    return (field, DEPTH_REASON) if _too_deep(value, 1) else None


def _key_path(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


# Values with nothing to check: numbers, booleans, null, and undecoded JSON (msgspec.Raw: a batch's points,
# checked one by one where they are decoded). Skipped before their path is even formatted: a 1000-point batch
# body made this walk build 1000 path strings for nothing (9 % of the gateway's CPU under batch load).
_LEAVES = frozenset({int, float, bool, type(None), msgspec.Raw})


def json_problem(value: Any, field: str = "", depth: int = 1) -> tuple[str, str] | None:
    """(field path, reason) for the first NUL or over-deep nesting in a decoded value, else None.

    ``value`` may be plain JSON (dicts, lists, strings, ...) or a whole decoded body (Structs are walked
    field by field, so one call checks every free-form part of a request). Stops as soon as it is
    ``MAX_JSON_DEPTH`` levels down, so it never recurses further than that.
    """
    if isinstance(value, str):
        return (field or "body", NUL_REASON) if "\x00" in value else None
    if isinstance(value, dict | list | msgspec.Struct) and depth > MAX_JSON_DEPTH:
        return field or "body", DEPTH_REASON
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            item = getattr(value, name)
            if type(item) in _LEAVES:
                continue
            found = json_problem(item, _key_path(field, name), depth + 1)
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return field or "body", f"keys {NUL_REASON}"
            if type(item) in _LEAVES:
                continue
            found = json_problem(item, _key_path(field, str(key)), depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) in _LEAVES:
                continue
            found = json_problem(item, f"{field}[{index}]", depth + 1)
            if found is not None:
                return found
    return None
