"""json_problem: the walk over a decoded body's free-form parts (NUL, nesting depth) that skips what has nothing to check."""

import msgspec

from telemetry_schemas.text import DEPTH_REASON, MAX_JSON_DEPTH, NUL_REASON, json_problem


class Body(msgspec.Struct):
    count: int
    points: list[msgspec.Raw]
    note: str | None = None


def test_leaves_and_undecoded_points_are_skipped() -> None:
    # A NUL inside an undecoded point is the point decoder's to find (with the point's index), not this walk's.
    raws = [msgspec.Raw(b'{"a":"\\u0000"}')] * 3
    assert json_problem([1, 2.5, True, None, *raws], "data_points") is None
    assert json_problem(Body(count=3, points=raws), "") is None


def test_text_after_leaves_is_still_checked_at_its_own_path() -> None:
    assert json_problem([1, 2.5, True, None, "ok", "x\x00"], "tags") == ("tags[5]", NUL_REASON)
    assert json_problem({"n": 1, "b": False, "s": {"t": "\x00"}}, "metadata") == ("metadata.s.t", NUL_REASON)
    assert json_problem(Body(count=1, points=[], note="\x00"), "") == ("note", NUL_REASON)


def test_depth_is_still_bounded_behind_leaves() -> None:
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    found = json_problem({"n": 1, "deep": deep}, "metadata")
    assert found is not None and found[1] == DEPTH_REASON
