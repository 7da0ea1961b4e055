"""The multipart forms of image edits and transcriptions: what a form holds survives the
relay's reading and its rebuilding for the upstream; no bytes make it fail other than with
a clear 4xx."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http import RelayError
from relay.media import (
    MAX_FILE_BYTES,
    FilePart,
    MultipartForm,
    audio_seconds,
    multipart_build,
    multipart_parse,
)

BOUNDARY = "comet-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}".encode()

names = st.text(st.characters(blacklist_characters='\x00"\\\r\n', codec="utf-8"), min_size=1)
values = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=200)
forms = st.builds(
    MultipartForm,
    fields=st.lists(st.tuples(names, values), max_size=8),
    files=st.lists(
        st.builds(
            FilePart,
            name=names,
            filename=names,
            content_type=st.sampled_from(["audio/wav", "image/png", "application/octet-stream"]),
            data=st.binary(max_size=2_000),
        ),
        max_size=3,
    ),
)


def _refusal(call) -> RelayError | None:
    """Return the RelayError `call` raises, or None if it returns."""
    try:
        call()
    except RelayError as error:
        return error
    return None


@given(form=forms)
def test_a_form_survives_reading_and_rebuilding(form):
    body = multipart_build(form, model="unused", boundary=BOUNDARY)

    parsed = multipart_parse(body, CONTENT_TYPE)

    assert parsed.fields == form.fields
    assert parsed.files == form.files


def test_the_rebuilt_form_names_the_channels_model():
    form = MultipartForm(fields=[("model", "whisper-1"), ("language", "en")], files=[])

    parsed = multipart_parse(
        multipart_build(form, model="upstream-whisper", boundary=BOUNDARY), CONTENT_TYPE
    )

    assert parsed.fields == [("model", "upstream-whisper"), ("language", "en")]


@settings(max_examples=300)
@given(body=st.binary(max_size=400), boundary=st.sampled_from([BOUNDARY, "a", '"quoted"']))
def test_any_bytes_are_read_or_refused_with_a_4xx(body, boundary):
    content_type = f"multipart/form-data; boundary={boundary}".encode()
    prefix = f"--{boundary.strip(chr(34))}\r\n".encode()
    for candidate in (body, prefix + body):
        refusal = _refusal(lambda: multipart_parse(candidate, content_type))  # noqa: B023
        assert refusal is None or 400 <= refusal.status_code < 500


@settings(max_examples=300)
@given(data=st.binary(max_size=600))
def test_any_bytes_are_measured_or_refused_with_a_4xx(data):
    for candidate in (data, b"RIFF\0\0\0\0WAVE" + data, b"fLaC" + data, b"OggS" + data):
        refusal = _refusal(lambda: audio_seconds(candidate) >= 1 or pytest.fail("< 1 s"))  # noqa: B023
        assert refusal is None or refusal.code == "unsupported_audio_format"


def test_a_file_past_25_mb_is_413():
    form = MultipartForm(
        fields=[("model", "m")],
        files=[FilePart("file", "a.wav", "audio/wav", b"\0" * (MAX_FILE_BYTES + 1))],
    )

    with pytest.raises(RelayError) as raised:
        multipart_parse(multipart_build(form, model="m", boundary=BOUNDARY), CONTENT_TYPE)

    assert (raised.value.status_code, raised.value.code) == (413, "file_too_large")
