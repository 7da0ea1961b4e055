"""Images and audio: their requests' bodies (JSON or multipart), what each is billed by,
and the length of an uploaded recording.

Read here, before anything is held: the body's shape, the model's unit for the endpoint
(`MediaBilling`), and what the hold assumes. Nothing of the content is kept: a prompt, a
text to speak or a file is read only to be counted or measured, and forwarded.
"""

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_noop

from core.inputs import storable_text_problem
from models_catalog.pricing import (
    UNIT_CHARACTER,
    UNIT_IMAGE,
    UNIT_SECOND,
    image_price,
    request_cost,
    unit_cost,
)
from models_catalog.selectors import ModelPrice

from . import containers, upstream
from .http import RelayError

IMAGES_GENERATIONS_PATH = "/v1/images/generations"
IMAGES_EDITS_PATH = "/v1/images/edits"
SPEECH_PATH = "/v1/audio/speech"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
TRANSLATIONS_PATH = "/v1/audio/translations"

MEDIA_CALLS = {
    IMAGES_GENERATIONS_PATH: upstream.IMAGES_GENERATIONS,
    IMAGES_EDITS_PATH: upstream.IMAGES_EDITS,
    SPEECH_PATH: upstream.SPEECH,
    TRANSCRIPTIONS_PATH: upstream.TRANSCRIPTIONS,
    TRANSLATIONS_PATH: upstream.TRANSLATIONS,
}
IMAGE_PATHS = frozenset({IMAGES_GENERATIONS_PATH, IMAGES_EDITS_PATH})
AUDIO_PATHS = frozenset({SPEECH_PATH, TRANSCRIPTIONS_PATH, TRANSLATIONS_PATH})
HEARING_PATHS = frozenset({TRANSCRIPTIONS_PATH, TRANSLATIONS_PATH})

# OpenAI's own limit on an uploaded file: 25 MB.
MAX_FILE_BYTES = 25 * 1024 * 1024
# A multipart body: one file at the limit and the form's other fields.
MAX_MULTIPART_BODY_BYTES = MAX_FILE_BYTES + 1024 * 1024
# A form's parts, and one text field (a long prompt in UTF-8).
MAX_PARTS = 64
MAX_FIELD_BYTES = 256 * 1024
# Images one request may ask for: OpenAI's limit.
MAX_IMAGES = 10
# Characters of one text to speak: OpenAI's limit.
MAX_SPEECH_CHARACTERS = 4096
# `size` and `quality` are short words ("1024x1792", "hd").
MAX_OPTION_CHARACTERS = 32


@dataclass(frozen=True, slots=True)
class FilePart:
    """One uploaded file of a multipart form."""

    name: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MultipartForm:
    """A multipart/form-data body: its text fields (in order) and its files."""

    fields: list[tuple[str, str]]
    files: list[FilePart]

    def value(self, name: str) -> str | None:
        for field_name, value in self.fields:
            if field_name == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class MediaBilling:
    """What a media call is billed by: a unit price (`unit`, `unit_price`, micro-USD per
    image / 1M characters / minute) or, with `unit` empty, the model's price per call.
    `units` is what the hold assumes (images asked for) or, for speech and transcription,
    what is charged if the call is answered (characters, seconds)."""

    unit: str
    unit_price: int | None
    units: int

    def hold_amount(self, price: ModelPrice) -> int:
        if not self.unit:
            return request_cost(price)
        assert self.unit_price is not None
        return unit_cost(
            unit=self.unit,
            unit_price=self.unit_price,
            count=self.units,
            group_ratio=price.group_ratio,
        )


def _invalid(message: str, *, param: str | None = None, **params: object) -> RelayError:
    return RelayError(400, message, code="invalid_value", param=param, params=params or None)


# --- Multipart ------------------------------------------------------------------------


def multipart_boundary(content_type: bytes) -> bytes:
    """Return the boundary of a multipart/form-data Content-Type, or raise 415 (another
    content type) or 400 (no boundary)."""
    return _boundary(content_type)


def form_model(form: MultipartForm) -> str:
    """Return the model a form names, or raise the 400 of a missing or unstorable name."""
    model = form.value("model")
    if not model:
        raise RelayError(
            400,
            gettext_noop("Name the model: 'model' is required."),
            code="missing_model",
            param="model",
        )
    return model


def _boundary(content_type: bytes) -> bytes:
    kind, _, rest = content_type.partition(b";")
    if kind.strip().lower() != b"multipart/form-data":
        raise RelayError(
            415,
            gettext_noop("Send the request body as multipart/form-data, with the file in it."),
            code="unsupported_media_type",
        )
    for parameter in rest.split(b";"):
        name, _, value = parameter.strip().partition(b"=")
        if name.strip().lower() == b"boundary":
            value = value.strip().strip(b'"')
            if 0 < len(value) <= 70:
                return value
    raise RelayError(
        400,
        gettext_noop("The multipart body has no boundary in its Content-Type."),
        code="invalid_multipart",
    )


def _disposition(value: str) -> dict[str, str]:
    """Return the parameters of a Content-Disposition header (`name`, `filename`)."""
    parameters: dict[str, str] = {}
    kind, _, rest = value.partition(";")
    if kind.strip().lower() != "form-data":
        return parameters
    while rest:
        rest = rest.lstrip(" ;")
        name, _, rest = rest.partition("=")
        if rest.startswith('"'):
            end = rest.find('"', 1)
            while end > 0 and rest[end - 1] == "\\":
                end = rest.find('"', end + 1)
            if end < 0:
                return {}
            parameters[name.strip().lower()] = rest[1:end].replace('\\"', '"')
            rest = rest[end + 1 :]
        else:
            item, _, rest = rest.partition(";")
            parameters[name.strip().lower()] = item.strip()
    return parameters


def _malformed() -> RelayError:
    return RelayError(
        400,
        gettext_noop("The multipart body is malformed."),
        code="invalid_multipart",
    )


def multipart_parse(raw: bytes, content_type: bytes) -> MultipartForm:
    """Return the fields and files of a multipart/form-data body, or raise a 4xx RelayError:
    415 for another content type, 413 for a file past `MAX_FILE_BYTES`, 400 for a body
    that is not a well-formed form (no boundary, no closing delimiter, a part without a
    name, a text field that is not UTF-8 or holds a NUL, too many parts)."""
    delimiter = b"\r\n--" + _boundary(content_type)
    pieces = (b"\r\n" + raw).split(delimiter)
    # pieces[0] is the preamble; the last piece follows the closing delimiter "--".
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise _malformed()
    if len(pieces) - 2 > MAX_PARTS:
        raise RelayError(
            400,
            gettext_noop("The multipart body has more than %(count)s parts."),
            code="invalid_multipart",
            params={"count": MAX_PARTS},
        )
    fields: list[tuple[str, str]] = []
    files: list[FilePart] = []
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n"):
            raise _malformed()
        head, separator, body = piece[2:].partition(b"\r\n\r\n")
        if not separator:
            raise _malformed()
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n"):
            name, colon, value = line.decode("utf-8", "replace").partition(":")
            if not colon:
                raise _malformed()
            headers[name.strip().lower()] = value.strip()
        disposition = _disposition(headers.get("content-disposition", ""))
        name = disposition.get("name", "")
        if not name or storable_text_problem(name) is not None:
            raise _malformed()
        if "filename" in disposition:
            if len(body) > MAX_FILE_BYTES:
                raise RelayError(
                    413,
                    gettext_noop("The file is larger than %(limit)s bytes (25 MB)."),
                    code="file_too_large",
                    param=name,
                    params={"limit": MAX_FILE_BYTES},
                )
            filename = disposition["filename"]
            if storable_text_problem(filename) is not None:
                raise _invalid(
                    gettext_noop("The file's name contains a NUL character."), param=name
                )
            files.append(
                FilePart(
                    name=name,
                    filename=filename,
                    content_type=headers.get("content-type", "application/octet-stream"),
                    data=body,
                )
            )
            continue
        if len(body) > MAX_FIELD_BYTES:
            raise _invalid(
                gettext_noop("The field '%(name)s' is longer than %(limit)s bytes."),
                param=name,
                name=name,
                limit=MAX_FIELD_BYTES,
            )
        try:
            value = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(
                gettext_noop("The field '%(name)s' is not valid UTF-8."), param=name, name=name
            ) from None
        if "\x00" in value:
            raise _invalid(
                gettext_noop("The field '%(name)s' contains a NUL character."),
                param=name,
                name=name,
            )
        fields.append((name, value))
    return MultipartForm(fields=fields, files=files)


def multipart_build(form: MultipartForm, *, model: str, boundary: str) -> bytes:
    """Return `form` as a multipart/form-data body, its `model` field set to `model`."""
    parts: list[bytes] = []
    quoted = _quote_parameter
    for name, value in form.fields:
        if name == "model":
            value = model
        disposition = f'form-data; name="{quoted(name)}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + value.encode()
            + b"\r\n"
        )
    for file in form.files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted(file.name)}"; '
                f'filename="{quoted(file.filename)}"\r\n'
                f"Content-Type: {file.content_type}\r\n\r\n"
            ).encode()
            + file.data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def _quote_parameter(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


# --- What a call is billed by -----------------------------------------------------------


def _whole_number(value: Any, *, param: str, highest: int, is_form: bool) -> int:
    """Return a form's or a JSON body's whole number from 1 to `highest` (a form sends it
    as text)."""
    if is_form and isinstance(value, str) and value.isdigit() and len(value) <= 6:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= highest:
        raise _invalid(
            gettext_noop("'%(key)s' must be a whole number from 1 to %(highest)s."),
            param=param,
            key=param,
            highest=highest,
        )
    return value


def _option(value: Any, *, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_OPTION_CHARACTERS:
        raise _invalid(
            gettext_noop("'%(key)s' must be text of at most %(highest)s characters."),
            param=param,
            key=param,
            highest=MAX_OPTION_CHARACTERS,
        )
    return value


def _required_text(value: Any, *, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(
            gettext_noop("'%(key)s' is required: the text of the request."), param=param, key=param
        )
    return value


def _wrong_unit(*, model: str, path: str, unit_path: str) -> RelayError:
    return RelayError(
        400,
        gettext_noop("The model '%(model)s' is called at %(endpoint)s, not %(path)s."),
        code="wrong_endpoint",
        param="model",
        params={"model": model, "endpoint": unit_path, "path": path},
    )


def _unit_path(price: ModelPrice) -> str | None:
    """Return the endpoint a model's unit belongs to (None: per token or per call)."""
    if price.price_per_image is not None:
        return IMAGES_GENERATIONS_PATH
    if price.price_per_million_characters is not None:
        return SPEECH_PATH
    if price.price_per_minute is not None:
        return TRANSCRIPTIONS_PATH
    return None


def _unit_of(price: ModelPrice, *, path: str) -> None:
    """Raise the refusal of a model whose unit another endpoint bills."""
    belongs = _unit_path(price)
    fits = (
        (path in IMAGE_PATHS and belongs == IMAGES_GENERATIONS_PATH)
        or (path == SPEECH_PATH and belongs == SPEECH_PATH)
        or (path in HEARING_PATHS and belongs == TRANSCRIPTIONS_PATH)
        or (belongs is None and price.price_per_call is not None)
    )
    if fits:
        return
    if belongs is not None:
        raise _wrong_unit(model=price.model_name, path=path, unit_path=belongs)
    # Priced per token: nothing here counts tokens.
    raise RelayError(
        400,
        gettext_noop(
            "The model '%(model)s' is priced per token, which %(path)s cannot bill: an "
            "operator must price it per image, per 1M characters, per minute or per call."
        ),
        code="unit_not_billable",
        param="model",
        params={"model": price.model_name, "path": path},
    )


def images_billing(price: ModelPrice, *, path: str, values: dict[str, Any]) -> MediaBilling:
    """Return what an image generation or edit (a form, whose values are text) is billed
    by: `n` images (1 to 10) of its `size` and `quality` at the model's price per image
    (or one call)."""
    _unit_of(price, path=path)
    _required_text(values.get("prompt"), param="prompt")
    images = _whole_number(
        values.get("n", 1), param="n", highest=MAX_IMAGES, is_form=path == IMAGES_EDITS_PATH
    )
    size = _option(values.get("size"), param="size")
    quality = _option(values.get("quality"), param="quality")
    if values.get("stream") in (True, "true"):
        raise _invalid(
            gettext_noop("Streamed image generation is not offered: leave 'stream' unset."),
            param="stream",
        )
    if price.price_per_image is None:
        return MediaBilling(unit="", unit_price=None, units=1)
    return MediaBilling(
        unit=UNIT_IMAGE,
        unit_price=image_price(price.price_per_image, size=size, quality=quality),
        units=images,
    )


def speech_billing(price: ModelPrice, *, body: dict[str, Any]) -> MediaBilling:
    """Return what a speech request is billed by: the characters of its `input`."""
    _unit_of(price, path=SPEECH_PATH)
    text = _required_text(body.get("input"), param="input")
    if len(text) > MAX_SPEECH_CHARACTERS:
        raise _invalid(
            gettext_noop("'input' may have at most %(highest)s characters."),
            param="input",
            highest=MAX_SPEECH_CHARACTERS,
        )
    if price.price_per_million_characters is None:
        return MediaBilling(unit="", unit_price=None, units=1)
    return MediaBilling(
        unit=UNIT_CHARACTER, unit_price=price.price_per_million_characters, units=len(text)
    )


def hearing_billing(price: ModelPrice, *, path: str, form: MultipartForm) -> MediaBilling:
    """Return what a transcription or translation is billed by: the seconds of its file,
    measured from the file (`audio_seconds`), rounded up."""
    _unit_of(price, path=path)
    audio = next((file for file in form.files if file.name == "file"), None)
    if audio is None:
        raise _invalid(gettext_noop("'file' is required: the audio to transcribe."), param="file")
    seconds = audio_seconds(audio.data)
    if price.price_per_minute is None:
        return MediaBilling(unit="", unit_price=None, units=1)
    return MediaBilling(unit=UNIT_SECOND, unit_price=price.price_per_minute, units=seconds)


# --- The length of a recording ----------------------------------------------------------


def _unmeasurable() -> RelayError:
    return RelayError(
        400,
        gettext_noop(
            "Comet cannot measure the length of this audio, which it bills by: send a WAV, "
            "MP3, FLAC, Ogg (Vorbis, Opus), MP4 (M4A) or WebM file."
        ),
        code="unsupported_audio_format",
        param="file",
    )


# The longest recording measured: 100 hours, more than 25 MB holds at any bitrate a voice
# is sent at. A header claiming more is refused rather than billed (and cannot take a
# charge past what a 64-bit amount holds).
MAX_RECORDING_SECONDS = 100 * 3600


def audio_seconds(data: bytes) -> int:
    """Return the length of a recording in whole seconds, rounded up (at least 1), read
    from the file itself: exact for WAV (its header), FLAC (its STREAMINFO), Ogg (its
    last page's granule position), MP4 and WebM (`relay.containers`: their headers and
    what they hold, as fractions), and for MP3 the sum of its frames' lengths. Raise 400
    `unsupported_audio_format` for any other file, one whose structure does not add up,
    or one longer than `MAX_RECORDING_SECONDS`."""
    if containers.is_mp4(data) or containers.is_matroska(data):
        try:
            if containers.is_mp4(data):
                exact = containers.mp4_seconds(data)
            else:
                exact = containers.matroska_seconds(data)
        except containers.ContainerError as error:
            raise RelayError(
                400, error.message, code="unsupported_audio_format", param="file"
            ) from None
        seconds = max(1, math.ceil(exact))
    else:
        seconds = _whole_seconds(data)
    if seconds > MAX_RECORDING_SECONDS:
        raise RelayError(
            400,
            gettext_noop(
                "The file says it lasts more than %(hours)s hours, which Comet does not bill."
            ),
            code="unsupported_audio_format",
            param="file",
            params={"hours": MAX_RECORDING_SECONDS // 3600},
        )
    return seconds


def _whole_seconds(data: bytes) -> int:
    """Return the whole seconds, rounded up, of a WAV, FLAC, Ogg or MP3 file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        seconds = _wav_seconds(data)
    elif data[:4] == b"fLaC":
        seconds = _flac_seconds(data)
    elif data[:4] == b"OggS":
        seconds = _ogg_seconds(data)
    else:
        seconds = _mp3_seconds(data)
    if seconds is None or not seconds >= 0 or math.isinf(seconds):
        raise _unmeasurable()
    return max(1, math.ceil(seconds - 1e-9))


def _wav_seconds(data: bytes) -> float | None:
    offset = 12
    byte_rate = 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk == b"fmt " and size >= 16:
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk == b"data":
            if not byte_rate:
                return None
            # A header written before the length was known (streamed WAV) says more than
            # the file holds: what is there is what is heard.
            return min(size, len(data) - body) / byte_rate
        offset = body + size + (size & 1)
    return None


def _flac_seconds(data: bytes) -> float | None:
    # The first metadata block is STREAMINFO: 20 bits of sample rate, then 36 bits of
    # total samples, starting 10 bytes into its body.
    if len(data) < 8 + 18 or data[4] & 0x7F != 0:
        return None
    bits = int.from_bytes(data[8 + 10 : 8 + 18], "big")
    rate = bits >> 44
    samples = bits & ((1 << 36) - 1)
    return samples / rate if rate and samples else None


def _ogg_seconds(data: bytes) -> float | None:
    if b"OpusHead" in data[:200]:
        rate = 48_000  # Opus' granule positions count 48 kHz samples
    else:
        start = data.find(b"\x01vorbis", 0, 200)
        if start < 0 or start + 16 > len(data):
            return None
        rate = struct.unpack_from("<I", data, start + 12)[0]
    last = data.rfind(b"OggS")
    if last < 0 or last + 14 > len(data) or not rate:
        return None
    granule = struct.unpack_from("<q", data, last + 6)[0]
    return granule / rate if granule > 0 else None


# MPEG audio: bitrates (kbit/s) by version group and layer, sample rates by version.
_MP3_BITRATES = {
    (1, 1): [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    (1, 2): [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    (1, 3): [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    (2, 1): [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    (2, 2): [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_MP3_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}
# Frames in a row that make a file MPEG audio rather than bytes that look like a header.
_MP3_FRAMES_TO_TRUST = 3


def _mp3_seconds(data: bytes) -> float | None:
    offset = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = data[6:10]
        offset = 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])
    seconds = 0.0
    frames = 0
    while offset + 4 <= len(data):
        header = int.from_bytes(data[offset : offset + 4], "big")
        frame = _mp3_frame(header)
        if frame is None:
            if frames >= _MP3_FRAMES_TO_TRUST:
                break  # trailing tags (ID3v1, APE) after the audio
            return None
        length, duration = frame
        seconds += duration
        frames += 1
        offset += length
    return seconds if frames >= _MP3_FRAMES_TO_TRUST else None


def _mp3_frame(header: int) -> tuple[int, float] | None:
    """Return the length in bytes and in seconds of the MPEG audio frame `header` opens."""
    if header >> 21 != 0x7FF:
        return None
    version = (header >> 19) & 3  # 3: MPEG 1, 2: MPEG 2, 0: MPEG 2.5
    layer = 4 - ((header >> 17) & 3)  # 1, 2 or 3
    bitrate_index = (header >> 12) & 15
    rate_index = (header >> 10) & 3
    padding = (header >> 9) & 1
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    group = (1, layer) if version == 3 else (2, 1 if layer == 1 else 2)
    bitrate = _MP3_BITRATES[group][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        samples = 384
        length = (12 * bitrate // rate + padding) * 4
    else:
        samples = 576 if layer == 3 and version != 3 else 1152
        length = samples // 8 * bitrate // rate + padding
    return length, samples / rate
