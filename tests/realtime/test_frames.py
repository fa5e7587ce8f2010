"""Property tests of ``realtime.frames.parse`` over every registered client frame."""

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from realtime import events, frames
from realtime.protocol import ErrorCode
from realtime.registry import registry


def parse(text: str) -> frames.Frame | frames.FrameError:
    return frames.parse(text, registry.models)


PROTOCOL_CODES = {str(code) for code in ErrorCode}
PARSE_CODES = {"invalid_json", "invalid_message"}
BIG = 2**63 - 1

# Every JSON value, strings with any code point a JSON escape can name (lone surrogates too).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
refs = st.none() | st.text(max_size=128) | st.integers(-(2**53), 2**53)


def check_answerable(result: frames.Frame | frames.FrameError) -> None:
    """Whatever came out, the server's answer can go on the wire: UTF-8 JSON text."""
    assert isinstance(result, frames.Frame | frames.FrameError)
    if isinstance(result, frames.FrameError):
        assert result.code in PROTOCOL_CODES
        assert result.code in PARSE_CODES
        assert isinstance(result.detail, str)
        assert result.detail
        answer = {"type": "error", "code": result.code, "detail": result.detail, "ref": result.ref}
    else:
        answer = {"type": "ack", "ref": result.ref}
    assert json.loads(events.encode(answer).encode("utf-8")) == answer


@given(st.text(st.characters(codec="utf-8")))
@example("")
@example("[" * 50_000)
@example('{"type": "ping", "ref": "\\ud800"}')
@example('{"type": "resume", "notifications_since": 1e999}')
@example('{"type": "resume", "notifications_since": ' + "9" * 5000 + "}")
@example('{"type": "notification.read", "ids": [' + "[" * 5000 + "]" * 5000 + "]}")
def test_any_text_parses_to_a_frame_or_a_contract_error(text: str) -> None:
    check_answerable(parse(text))


@given(json_values)
def test_any_json_value_parses_without_raising(value: Any) -> None:
    result = parse(json.dumps(value))
    check_answerable(result)
    if not isinstance(value, dict):
        assert isinstance(result, frames.FrameError)
        assert result.code == "invalid_message"


@given(
    st.sampled_from(sorted(registry.models)),
    st.dictionaries(
        st.sampled_from(["ref", "notifications_since", "ids", "all", "token", "extra"]) | any_text,
        json_values,
        max_size=5,
    ),
)
def test_known_types_with_any_fields_never_raise(kind: str, fields: dict[str, Any]) -> None:
    result = parse(json.dumps({**fields, "type": kind}))
    check_answerable(result)
    if isinstance(result, frames.FrameError):
        assert result.code == "invalid_message"
        # The client's ref comes back whenever it is one a client may use, else null.
        ref = fields.get("ref")
        assert result.ref == (ref if _valid_ref(ref) else None)
    else:
        assert result.type == kind


def _valid_ref(ref: Any) -> bool:
    return (
        isinstance(ref, str)
        and len(ref) <= 128
        and _utf8(ref)
        or (type(ref) is int and abs(ref) <= 2**53)
    )


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


valid_frames = st.one_of(
    st.fixed_dictionaries({"type": st.just("ping")}, optional={"ref": refs}),
    st.fixed_dictionaries(
        {"type": st.just("resume"), "notifications_since": st.integers(0, BIG)},
        optional={"ref": refs},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("notification.read"),
            "ids": st.lists(st.integers(1, BIG), max_size=20),
        },
        optional={"ref": refs, "all": st.just(False)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("notification.read"), "all": st.just(True)},
        optional={"ref": refs},
    ),
    st.fixed_dictionaries(
        {"type": st.just("auth.refresh"), "token": st.text(min_size=1, max_size=4096)},
        optional={"ref": refs},
    ),
)


@settings(max_examples=200)
@given(valid_frames, st.dictionaries(st.text().filter(lambda k: k not in _KNOWN), json_values))
@example({"type": "notification.read", "ids": list(range(1, 1001)), "ref": "max"}, {})
@example({"type": "resume", "notifications_since": BIG, "ref": 2**53}, {})
@example({"type": "auth.refresh", "token": "t" * 4096, "ref": "r" * 128}, {})
def test_valid_frames_round_trip(data: dict[str, Any], extra: dict[str, Any]) -> None:
    result = parse(json.dumps({**extra, **data}))
    assert isinstance(result, frames.Frame), result
    dumped = result.model_dump()
    assert {key: dumped[key] for key in data} == data
    assert dumped["ref"] == data.get("ref")
    assert not set(extra) & set(dumped), "unknown fields are ignored, not kept"
    again = parse(json.dumps(dumped))
    assert again == result
    check_answerable(result)


_KNOWN = {"type", "ref", "notifications_since", "ids", "all", "token"}


@given(
    refs,
    st.sampled_from(["5", 5.5, -1, 2**64, True, None, [1], {"a": 1}]),
)
def test_a_wrong_field_is_invalid_message_with_the_ref(ref: Any, since: Any) -> None:
    frame = {"type": "resume", "notifications_since": since}
    if ref is not None:
        frame["ref"] = ref
    result = parse(json.dumps(frame))
    assert isinstance(result, frames.FrameError)
    assert (result.code, result.ref) == ("invalid_message", ref)
    assert "notifications_since" in result.detail


@given(st.characters(categories=["Cs"]), st.text(max_size=5), st.text(max_size=5))
def test_lone_surrogates_are_never_echoed(surrogate: str, before: str, after: str) -> None:
    for kind in ("ping", "unknown"):
        # JSON escapes it as "\\udXXX"; the text sent is plain ASCII.
        result = parse(json.dumps({"type": kind, "ref": before + surrogate + after}))
        check_answerable(result)
        assert isinstance(result, frames.FrameError)
        assert result.ref is None
