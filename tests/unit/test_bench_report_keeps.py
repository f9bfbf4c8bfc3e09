"""make bench regenerates docs/benchmarks.md but keeps its hand-written sections."""

from tests.bench.report import kept_sections


def test_the_before_after_section_survives_a_regeneration() -> None:
    old = "# Benchmarks\n\n## Results\nold\n\n## Before / after the redesign (issue 9)\nkept text\n\n## Method\nm\n"
    assert kept_sections(old) == "## Before / after the redesign (issue 9)\nkept text\n"
    assert kept_sections("# Benchmarks\n## Results\n") == ""
