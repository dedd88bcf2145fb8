"""The field path type: one parse and one format (the rescued column's keys), and the notations
we keep writing (schema diffs, pyarrow's `/a/[]/b`, quality's folded top paths)."""

from __future__ import annotations

import random

import pytest

from lake_assets.core.fieldpath import ELEMENT, FOLD_PATTERN, FOLD_REPLACEMENT, VALUES, FieldPath, fold, join
from lake_assets.core.records import Fitter

TEXTS = [
    ("device.fw.patch", ("device", "fw", "patch")),
    ("signals[2].unit", ("signals", 2, "unit")),
    ("signals[].unit", ("signals", ELEMENT, "unit")),
    ("m[0][11]", ("m", 0, 11)),
    ("meta.`CodePipeline.job`.id", ("meta", "CodePipeline.job", "id")),
    ("`a.b`", ("a.b",)),
    ("a.`q``d.e`", ("a", "q`d.e")),
    ("`tags[0]`[1]", ("tags[0]", 1)),
    ("a b.c=d", ("a b", "c=d")),            # only . ` [ ] are quoted
    ("a..b", ("a", "", "b")),               # an empty name
    ("x{}", ("x{}",)),                      # braces are a name's characters here
]


@pytest.mark.parametrize("text, steps", TEXTS)
def test_parse_reads_what_format_writes(text, steps):
    path = FieldPath.parse(text)
    assert path.steps == steps
    assert path.format() == str(path) == text


def test_random_paths_round_trip_and_fold_like_the_typed_value():
    rng = random.Random(5)
    alphabet = ["a", "b", ".", "`", "[", "]", "1", " ", "{", "x"]
    for _ in range(3000):
        steps = [""] if rng.random() < 0.05 else []
        while len(steps) < rng.randrange(1, 6):
            r = rng.random()
            steps.append(rng.randrange(0, 30) if steps and r < 0.2 else ELEMENT if steps and r < 0.3
                         else "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 5))))
        path = FieldPath(tuple(steps))
        text = path.format()
        assert FieldPath.parse(text) == path, text
        assert fold(text) == FieldPath(tuple(ELEMENT if isinstance(s, int) else s for s in steps)).format(), text


def test_the_fitter_writes_format_one_step_at_a_time():
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("a", T.StructType([T.StructField("x", T.LongType())])),
                           T.StructField("l", T.ArrayType(T.StructType([T.StructField("v", T.LongType())]))),
                           T.StructField("m", T.MapType(T.StringType(), T.LongType()))])
    _, rescued, _ = Fitter(schema).fit({"a": {"x": "s", "b.c": 1}, "l": [{"v": 1}, {"v": "x", "w[1]": 2}],
                                        "m": {"k.1": "z"}, "": {"q": 1}})
    assert list(rescued) == ["a.x", "a.`b.c`", "l[1].v", "l[1].`w[1]`", "m.`k.1`", ""]
    assert [FieldPath.parse(k) for k in rescued] == [
        FieldPath(s) for s in (("a", "x"), ("a", "b.c"), ("l", 1, "v"), ("l", 1, "w[1]"), ("m", "k.1"), ("",))]
    assert join(join(None, "a"), 3) == FieldPath(("a", 3)).format() == "a[3]"


@pytest.mark.parametrize("text", ["a`b", "`a`b", "a[x]", "a]", "a[1]b", "`a"])
def test_text_that_is_no_path_is_refused(text):
    with pytest.raises(ValueError):
        FieldPath.parse(text)


def test_other_notations():
    path = FieldPath(("a.b", ELEMENT, "c"))
    assert path.plain() == "a.b[].c"                       # schema diffs: names as they are
    assert FieldPath.from_arrow("/a.b/[]/c") == path                # pyarrow's error texts
    assert FieldPath(("m", VALUES, "x")).plain() == "m{}.x"
    assert path.in_array and not FieldPath(("a", "b")).in_array and path.names == ("a.b", "c") and path.leaf == "c"
    assert path.under(FieldPath(("a.b",))) and not path.under(path) and not FieldPath(("a", "b")).under(
        FieldPath(("a.b",)))


def test_the_engine_folds_array_positions_as_fold_does(spark):
    """quality's top paths fold positions in the engine (Java or Rust regex): never inside quotes."""
    from pyspark.sql import functions as F

    keys = ["a[2].b", "signals[12].unit[3]", "`a[1]`", "`a.b`[4].`c[5]`", "x.`q``d[7]`[8]", "`_file_path`", "a[].b"]
    got = [r[0] for r in spark.createDataFrame([(k,) for k in keys], "raw string")
           .select(F.regexp_replace("raw", FOLD_PATTERN, FOLD_REPLACEMENT)).collect()]
    assert got == [fold(k) for k in keys] == [
        "a[].b", "signals[].unit[]", "`a[1]`", "`a.b`[].`c[5]`", "x.`q``d[7]`[]", "`_file_path`", "a[].b"]
