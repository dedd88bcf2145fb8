"""Strings pyarrow reads as timestamps (whole seconds, dates, zones) keep their text in the scan's
parse: read off each line by the key where that is exact, else by parsing the file again. Either
way the parse must equal the second parse's, and the scan the Python Inferrer's."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake_assets.core import pyarrow_scan

READ_OFF = [  # the text is read off the lines: one parse
    b'{"t":"2026-11-18T08:15:02Z","d":"2026-11-18","u":"2026-11-18T08:15:02.123Z"}\n',
    b'{"t":"2026-11-18T08:15:02+01:00"}\n{"t":"2026-11-18T09:15:02Z"}\n{"t":null}\n{}\n',
    b'{"a":{"t":"2026-11-18 08:15:02","x":1}}\n{"a":null}\n\n{"a":{"x":2}}\r\n{"a":{"t":"2026-11-18 09:15:02"}}',
    b'{"a":{"b":{"t":"2026-11-18"}},"z":1}\n{"z":2}\n{"a":{"b":null}}\n{"a":{}}\n',
    b'{"s":"say \\"t\\":\\"x\\"","t":"2026-11-18"}\n',           # the key's text inside a string value
    # an array starting with null: _arrow_try reads it typed again (pyarrow's inference builds it invalid)
    b'{"p":null}\n{"p":{"a":[null,false],"t":"2026-11-18"}}\n{"p":{"a":[null,false]}}\n',
]
PARSED_AGAIN = [  # where the key's text could mislead, or a value is not its text: parsed again
    b'{"t":"2026\\u002d11-18"}\n',                                 # an escape in the value
    b'{"t":"2026-11-18","a":{"t":"2026-11-18"}}\n',                # two fields named t
    b'{"l":[{"t":"2026-11-18"}],"s":"2026-11-18"}\n',              # inside an array
    b'{"t":"2026-11-18T08:15:02+01:00"}\n{"t":"2026-11-18T09:15:02"}\n',   # zoned and not
    b'{"x\\"t":1,"t":"2026-11-18"}\n',                             # a name holding a quote
]


def _parses(data: bytes, monkeypatch) -> tuple[dict, int]:
    calls = []
    original = pyarrow_scan._arrow_try
    monkeypatch.setattr(pyarrow_scan, "_arrow_try", lambda *a: calls.append(1) or original(*a))
    return pyarrow_scan.scan_bytes(data), len(calls)


@pytest.mark.parametrize("data, parses", [(d, 1) for d in READ_OFF] + [(d, 2) for d in PARSED_AGAIN])
def test_timestamp_text_equals_a_second_parse(data, parses, monkeypatch):
    first = pyarrow_scan.arrow_read(data)
    assert any(pa.types.is_timestamp(t) or "timestamp" in str(t) for t in first.schema.types)
    fast, count = _parses(data, monkeypatch)
    assert fast["engine"] == "arrow" and count == parses
    (table, _, _), = fast["parsed"]
    as_text = pa.schema([pa.field(f.name, pyarrow_scan._strings_for_timestamps(f.type)) for f in first.schema])
    assert table.schema == as_text and table.to_pylist() == pyarrow_scan.arrow_read(data, as_text).to_pylist()
    slow = pyarrow_scan.scan_bytes(data, use_arrow=False)
    assert fast["schema"].json() == slow["schema"].json() and fast["records"] == slow["records"]
