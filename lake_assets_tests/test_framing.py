"""framing.frame: every landing framing normalised to NDJSON records (pure functions over bytes)."""

import json
import random

import pytest

from lake_assets.core.framing import Framing, concatenated, frame, unmarshal
from lake_assets.core.records import parse_line


def _records(framed) -> list:
    return [parse_line(line) for line in framed.data.split(b"\n") if line.strip()]


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _random_record(rng: random.Random) -> dict:
    text = "".join(rng.choice(['"', "\\", "{", "}", "[", "]", "a", " ", "\n", "é"]) for _ in range(rng.randrange(6)))
    return {"id": rng.randrange(1000), "s": text, "nested": {"list": [rng.random(), {"x": text}], "empty": []}}


def test_concatenated_values_split_exactly_whatever_the_strings_hold():
    rng = random.Random(3)
    for _ in range(200):
        records = [_random_record(rng) for _ in range(rng.randrange(1, 6))]
        pieces = [json.dumps(r, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2])) for r in records]
        data = "".join(p + rng.choice(["", " ", "\n", "\r\n", "\t "]) for p in pieces).encode()
        framed = frame(data, Framing(multiline=True))
        assert framed.per_record and _records(framed) == records and not framed.errors
        if len(records) > 1 and all(b"\n" not in p.encode() for p in pieces):  # Firehose: detected without config
            separators_parse_as_lines = all(line.strip() == b"" or _parses(line) for line in data.split(b"\n"))
            detected = concatenated(data)
            assert (detected is None) if separators_parse_as_lines else _records(detected) == records


def test_plain_ndjson_is_left_as_it_is_and_lines_that_all_parse_are_not_concatenated():
    data = b'{"a":1}\n{"a":2}\n'
    assert frame(data, Framing()).data is data
    assert concatenated(b'{"a":1}\n[1, 2]\n') is None  # a line that is an array stays a malformed line
    assert concatenated(b'{"a":1}\n{"a":\n') is None    # a truncated line stays a malformed line
    # a top-level scalar between objects is a record that is not an object (quarantined), the others land
    assert concatenated(b'{"a":1} 5 {"b":2}').data == b'{"a":1}\n5\n{"b":2}'


def test_bom_and_cr_only_line_endings():
    assert frame(b'\xef\xbb\xbf{"a":1}\r{"a":2}\r\n{"a":3}', Framing()).data == b'{"a":1}\n{"a":2}\r\n{"a":3}'


@pytest.mark.parametrize("data", [b'[{"a":1},{"a":2}]', b'{\n "a": 1\n}\n{\n "a": 2\n}\n', b'{"a":1}\n{"a":2}'])
def test_multiline_documents_and_arrays_are_records_by_position(data):
    framed = frame(data, Framing(multiline=True))
    assert framed.per_record and _records(framed) == [{"a": 1}, {"a": 2}] and not framed.errors


def test_a_document_that_does_not_parse_is_one_quarantined_record_with_its_text():
    framed = frame(b'{"a":1}\n{"a": oops\n}', Framing(multiline=True))
    lines = framed.data.split(b"\n")
    assert parse_line(lines[0]) == {"a": 1} and framed.errors[2][0].startswith('{"a": oops')


def test_records_path_takes_the_elements_of_each_documents_array():
    data = b'{"Records":[{"a":1},{"a":2}]}\n{"Records":[]}\n{"Other":1}\n{"Records":[3]}'
    framed = frame(data, Framing(records_path=("Records",)))
    lines = framed.data.split(b"\n")
    assert [parse_line(x) for x in lines[:2]] == [{"a": 1}, {"a": 2}]
    assert "no array at records_path Records" in framed.errors[3][1] and lines[3] == b"3"  # 3: not an object


def test_dynamodb_json_unmarshals_every_type_and_keeps_export_lines():
    item = {"pk": {"S": "u#1"}, "n": {"N": "18"}, "d": {"N": "1.50"}, "big": {"N": "123456789012345678901234567890"},
            "b": {"BOOL": True}, "z": {"NULL": True}, "m": {"M": {"c": {"S": "x"}}}, "l": {"L": [{"N": "1"}]},
            "ss": {"SS": ["a"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AQ=="]}, "bin": {"B": "AQ=="}}
    data = (json.dumps({"Item": item}) + "\n\n" + json.dumps({"dynamodb": {"NewImage": {"pk": {"S": "u#2"}}}})
            + "\n" + json.dumps({"eventName": "REMOVE"})).encode()
    framed = frame(data, Framing(dynamodb=True))
    lines = framed.data.split(b"\n")
    assert not framed.per_record and lines[1] == b""  # export lines keep their line numbers
    assert parse_line(lines[0]) == {"pk": "u#1", "n": 18, "d": 1.5, "big": 123456789012345678901234567890, "b": True,
                                    "z": None, "m": {"c": "x"}, "l": [1], "ss": ["a"], "ns": [1, 2.5],
                                    "bs": ["AQ=="], "bin": "AQ=="}
    assert parse_line(lines[2]) == {"pk": "u#2"} and "no Item or NewImage" in framed.errors[4][1]
    with pytest.raises(ValueError):
        unmarshal({"N": "eighteen"})
