"""The two-pass read of an exploded JSON list (readers._exploded_via_element_text) must give exactly what the
direct parse gives, or step aside: records are read both ways and compared, frame and problems."""

from __future__ import annotations

import json

import pytest

import pipelines.ingest.readers as readers

CONTACT = {"external_userid": "wm1", "name": "测试", "type": 1, "gender": 2, "unionid": "oU1"}
STAFF = {"userid": "s1", "remark": "", "createtime": 1735697567, "add_way": 1, "state": "qr",
         "tags": [{"group_name": "来源", "tag_name": "门店", "type": 1}], "remark_mobiles": ["138 0000 0000"]}


def _line(follow_user, **extra) -> bytes:
    return json.dumps({"errcode": 0, "external_contact": CONTACT, "follow_user": follow_user, **extra},
                      ensure_ascii=False).encode()


def _both_ways(monkeypatch, layout, lines: list[bytes]):
    numbers = list(range(1, len(lines) + 1))
    taken = []
    real = readers._exploded_via_element_text

    def spy(*args):
        taken.append(real(*args) is not None)
        return real(*args)

    monkeypatch.setattr(readers, "_exploded_via_element_text", spy)
    fast = readers._frame_for_layout(lines, numbers, layout)
    monkeypatch.setattr(readers, "_exploded_via_element_text", lambda *args: None)
    direct = readers._frame_for_layout(lines, numbers, layout)
    return fast, direct, taken == [True]


CASES = {
    # taken: plain records, null and missing fields, empty and null lists, null elements, odd numbers
    "plain": ([_line([STAFF, {**STAFF, "userid": "s2"}]), _line([]), _line(None), _line([None, {}])], True),
    "numbers and nested values as text": ([_line([{**STAFF, "createtime": 1.0, "add_way": 1e3, "state": 2**70,
                                                   "remark": True, "tags": {"a": [0.1, None, "x\"y\n/"]}}])], True),
    "duplicate keys": ([b'{"follow_user": [{"userid": "a", "userid": "b"}], "errcode": 0}'], True),
    "escaped text": ([_line([{**STAFF, "remark": "\u00e9\U0001F600/"}]).replace("é".encode(), b"\\u00e9")], True),
    # either way (polars writes a tab or a newline as it is, which the second pass may refuse)
    "control characters": ([_line([{**STAFF, "remark": "a\tb\nc\u0001"}])], None),
    # stepping aside: the direct parse decides (and quarantines)
    "negative zero": ([_line([{**STAFF, "createtime": -0.0}]), _line([{**STAFF, "add_way": -1e-400}])], False),
    "string element that reads like an object": ([_line(['{"userid": "x"}'])], False),
    "escaped brace": ([_line(["\u007b\"userid\": \"x\"}"]).replace(b'"{', b'"\\u007b')], False),
    "scalar elements": ([_line([STAFF]), _line(["abc", 1, True]), _line([[1]])], False),
    "list is not a list": ([_line({"userid": "a"}), _line("abc")], False),
    "malformed line": ([_line([STAFF]), b'{"follow_user": [{"userid": '], False),
    "huge number": ([_line([{**STAFF, "createtime": 1.5e300}])], False),
    "NUL in a value": ([_line([{**STAFF, "remark": "a\u0000b"}])], False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_element_text_read_matches_direct_parse(config, monkeypatch, case):
    lines, expect_fast = CASES[case]
    for name in ("wecom_externalcontact_jsonl", "wecom_batch_get_by_user_jsonl", "oa_user_get_jsonl"):
        layout = config.layouts[name]
        (frame, problems), (frame_direct, problems_direct), taken = _both_ways(monkeypatch, layout, lines)
        assert frame.equals(frame_direct), (case, name)
        assert problems == problems_direct, (case, name)
        if name == "wecom_externalcontact_jsonl" and expect_fast is not None:
            assert taken == expect_fast, case
