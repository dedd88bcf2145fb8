import pytest

from lake_assets.config import DEMO_CONFIG, ConfigError, load_config, parse_config

MINIMAL = """
landing: s3://acme-landing
warehouse: s3://acme-lake
sources:
  telemetry:
    path: telemetry/
    format: json
    start_date: 2026-01-01
    schema_evolution_mode: addNewColumns
    schema_hints: "event_id STRING, metrics.temp DOUBLE"
"""


def test_minimal_config_parses_into_typed_objects():
    lake = parse_config(MINIMAL, "lake.yaml")
    source = lake.sources["telemetry"]
    assert (lake.landing, lake.warehouse) == ("s3://acme-landing", "s3://acme-lake")
    assert source.name == "telemetry" and str(source.start_date) == "2026-01-01"
    assert [(".".join(p), t.simpleString()) for p, t in source.hints] == [("event_id", "string"),
                                                                          ("metrics.temp", "double")]
    assert source.rescued_data_column == "_rescued_data" and source.on_overwrite == "reprocess"


def test_bundled_demo_config_is_valid():
    lake = load_config(DEMO_CONFIG)
    assert "telemetry" in lake.sources and lake.silver and lake.gold


@pytest.mark.parametrize("change, expected", [
    ("    colour: blue\n", "sources.telemetry.colour: unknown key"),
    ("bogus: 1\n", "bogus: unknown key"),
])
def test_unknown_keys_are_named(change, expected):
    text = MINIMAL + change if change.startswith("    ") else change + MINIMAL
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lake.yaml")
    assert "lake.yaml" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("old, new, expected", [
    ("schema_evolution_mode: addNewColumns", "schema_evolution_mode: sometimes",
     "sources.telemetry.schema_evolution_mode"),
    ("start_date: 2026-01-01", "start_date: soon", "sources.telemetry.start_date"),
    ("    path: telemetry/\n", "", "sources.telemetry.path: required key is missing"),
    ('schema_hints: "event_id STRING, metrics.temp DOUBLE"', 'schema_hints: "event_id STRANG"',
     "unknown type 'strang'"),
    ("  telemetry:", "  Tele-metry:", "names are lower-case"),
])
def test_bad_values_name_key_and_expectation(old, new, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL.replace(old, new), "lake.yaml")
    assert expected in str(err.value)


def test_silver_must_reference_a_source():
    text = MINIMAL + "silver:\n  events:\n    from: nosuch\n    mode: append\n"
    with pytest.raises(ConfigError, match="silver.events.from: unknown source 'nosuch'"):
        parse_config(text, "lake.yaml")


def test_upsert_needs_keys_and_sequence():
    text = MINIMAL + "silver:\n  events:\n    from: telemetry\n    mode: upsert\n"
    with pytest.raises(ConfigError, match="mode upsert needs keys and sequence_by"):
        parse_config(text, "lake.yaml")


def test_local_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "lake.yaml"
    path.write_text(MINIMAL.replace("s3://acme-landing", "landing").replace("s3://acme-lake", "./wh"))
    lake = load_config(path)
    assert lake.landing == str(tmp_path / "landing") and lake.warehouse == str(tmp_path / "wh")


def test_missing_or_broken_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read lake config .*nope.yaml.*LAKE_CONFIG"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("landing: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_lake_config_env_var_wins_over_demo(tmp_path, monkeypatch):
    path = tmp_path / "lake.yaml"
    path.write_text(MINIMAL)
    monkeypatch.setenv("LAKE_CONFIG", str(path))
    assert load_config().file == str(path.resolve())


def test_every_problem_at_once_each_naming_file_and_key():
    text = MINIMAL.replace("start_date: 2026-01-01", "start_date: 2026-11-31").replace(
        "schema_evolution_mode: addNewColumns", "schema_evolution_mode: sometimes") + (
        "  Bad-Name: {path: x/, start_date: 2026-01-01}\n"
        "silver:\n  events: {from: nosuch}\n  latest: {from: telemetry, mode: upsert}\n"
        "gold:\n  daily: {from: [events, missing], sql: SELECT 1}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lake.yaml")
    assert str(err.value).splitlines() == [
        "lake.yaml: sources.telemetry.start_date: 2026-11-31 is not a valid date (YYYY-MM-DD)",
        "lake.yaml: sources.telemetry.schema_evolution_mode: 'sometimes' is not one of 'addNewColumns', 'rescue', "
        "'failOnNewColumns' or 'none'",
        "lake.yaml: silver.latest: mode upsert needs keys and sequence_by",
        "lake.yaml: sources.Bad-Name: names are lower-case letters, digits and _",
        "lake.yaml: silver.events.from: unknown source 'nosuch' (sources: telemetry, Bad-Name)",
        "lake.yaml: gold.daily.from: unknown silver table 'missing'",
    ]


def test_dates_stay_typed_and_other_yaml_values_unchanged():
    lake = parse_config(MINIMAL.replace("path: telemetry/", "path: '2026-01-01/'"), "lake.yaml")
    source = lake.sources["telemetry"]
    assert str(source.start_date) == "2026-01-01" and type(source.start_date).__name__ == "date"
    assert source.path == "2026-01-01/"
