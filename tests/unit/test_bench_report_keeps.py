"""make bench regenerates docs/benchmarks.md but keeps its hand-written sections."""

from tests.bench.report import kept_sections


def test_the_before_after_section_survives_a_regeneration() -> None:
    old = "# Benchmarks\n\n## Results\nold\n\n## Before / after the redesign (issue 9)\nkept text\n\n## Method\nm\n"
    assert kept_sections(old) == "## Before / after the redesign (issue 9)\nkept text\n"
    assert kept_sections("# Benchmarks\n## Results\n") == ""


def test_every_before_after_section_and_the_peers_table_survive_in_their_order() -> None:
    old = (
        "# Benchmarks\n\n## Results\nold\n\n## Before / after the twenty-first session of 2026-12-05\nnew\n\n"
        "## Before / after the third session of 2026-12-03\nthird\n\n## Side by side with InfluxDB and "
        "VictoriaMetrics\ntable\n\n## Method\nm\n"
    )
    kept = kept_sections(old)
    assert kept == (
        "## Before / after the twenty-first session of 2026-12-05\nnew\n\n"
        "## Before / after the third session of 2026-12-03\nthird\n\n"
        "## Side by side with InfluxDB and VictoriaMetrics\ntable\n"
    )
