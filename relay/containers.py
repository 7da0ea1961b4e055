"""The length of a recording in a container: MP4 (ISO base media: .m4a, .mp4, .mov) and
Matroska (.webm, .mka), read from the file's own structure, exactly, as a fraction of
seconds (`relay.media.audio_seconds` rounds it up to whole seconds, never through a float
sum).

A container says its length in a header that a client writes (MP4's `mvhd`, Matroska's
`Duration`), but players play what the file holds: the sample tables and fragments of an
MP4, the blocks of a Matroska file. Both are read and the longest counts, so a header
that claims less than the file plays is not a cheaper call.

The durations a file gives its samples and blocks are client-written too: an MP4 whose
samples last 0, a WebM whose blocks all sit at time 0 or lace many frames into one, says
it lasts a second while a decoder plays every frame. So the frames of each audio track
whose codec is known are counted, and the file lasts at least their number times the
codec's shortest frame (`Floor`): never more than a real file plays, which only a
file that claims less than it holds is billed by.

Hostile files are refused with `ContainerError`, never an exception of another kind: a
size past the end of the file or its enclosing element, a truncated header, a length that
is not a finite number of seconds above zero. The work is bounded: every box or element
moves the reading forward by at least its header, only the few containers that lead to a
length are opened (a fixed depth), and at most `MAX_BOXES` / `MAX_ELEMENTS` are read.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from django.utils.translation import gettext_noop

# Boxes (MP4) and elements (Matroska) read from one file at most: a 25 MB file of real
# audio has far fewer (a block per 20 ms of Opus is 180,000 an hour).
MAX_BOXES = 100_000
MAX_ELEMENTS = 1_000_000

MP4_DAMAGED = gettext_noop(
    "Comet cannot read the length of this MP4 (M4A) file, which it bills by: the file is "
    "truncated or damaged."
)
MATROSKA_DAMAGED = gettext_noop(
    "Comet cannot read the length of this WebM (Matroska) file, which it bills by: the file "
    "is truncated or damaged."
)
TOO_COMPLEX = gettext_noop(
    "Comet cannot read the length of this file, which it bills by: it has too many parts."
)


class ContainerError(ValueError):
    """A container whose length cannot be read; `message` is an English msgid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- The shortest frame of a codec --------------------------------------------------------

# Opus frames last 2.5 ms at least (RFC 6716), whatever the rate.
OPUS_SHORTEST = Fraction(1, 400)
# MPEG-1/2 audio (MP1, MP2, MP3): 384 samples (layer I) at 48 kHz at most, 8 ms.
MPEG_AUDIO_SHORTEST = Fraction(384, 48_000)
# An AAC frame plays 480 samples at least (AAC-LD and -ELD; LC plays 960 or 1,024, HE-AAC
# 1,024 at its core rate, USAC 768), at the rate of its AudioSpecificConfig.
AAC_SHORTEST_SAMPLES = 480
# Audio object types of the AAC family (ISO/IEC 14496-3, 1.5.1.1); the others (CELP,
# HVXC, ALS, …) have shorter frames and give no floor.
_AAC_OBJECT_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 17, 19, 20, 21, 22, 23, 29, 39, 42})
_AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


@dataclass(frozen=True, slots=True)
class Floor:
    """How long an audio track plays at least: `frame` seconds for each of its frames,
    less `lead` seconds a decoder drops (Opus's pre-skip; Vorbis's first packet)."""

    frame: Fraction
    lead: Fraction = Fraction(0)

    def seconds(self, frames: int) -> Fraction:
        return max(Fraction(0), frames * self.frame - self.lead)


def _aac_floor(config: bytes) -> Floor | None:
    """Return the floor of an AAC track from its AudioSpecificConfig: 480 samples a frame
    at its (core) sampling rate, or None if it is not AAC or does not read."""
    bits = int.from_bytes(config[:12], "big")
    width = 8 * len(config[:12])
    position = 0

    def read(count: int) -> int | None:
        nonlocal position
        if position + count > width:
            return None
        position += count
        return (bits >> (width - position)) & ((1 << count) - 1)

    def object_type() -> int | None:
        kind = read(5)
        if kind == 31:
            extended = read(6)
            return None if extended is None else 32 + extended
        return kind

    def rate() -> int | None:
        index = read(4)
        if index == 15:
            return read(24)
        return _AAC_RATES[index] if index is not None and index < len(_AAC_RATES) else None

    kind = object_type()
    core_rate = rate()
    if kind in (5, 29):  # SBR or PS: the extension's rate, then the core's object type
        if read(4) is None or rate() is None:
            return None
        kind = object_type()
    if kind not in _AAC_OBJECT_TYPES or not core_rate:
        return None
    return Floor(Fraction(AAC_SHORTEST_SAMPLES, core_rate))


# --- MP4 (ISO base media) ----------------------------------------------------------------

# Types a file of ISO base media may begin with (QuickTime files need not start with ftyp).
MP4_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin"})
# A duration of all ones: "unknown" (ISO/IEC 14496-12).
_UNKNOWN_32 = 0xFFFFFFFF
_UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF


def is_mp4(data: bytes) -> bool:
    # An MPEG audio frame starts with 0xFF, which no box size of a 25 MB file does.
    return len(data) >= 8 and data[0] != 0xFF and data[4:8] in MP4_FIRST_BOXES


class _Boxes:
    """The boxes of one MP4 file, read within their parents' bounds, counted."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.left = MAX_BOXES

    def children(self, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        """Yield the type, body start and end of each box from `start` to `end`."""
        data = self.data
        offset = start
        while offset < end:
            self.left -= 1
            if self.left < 0:
                raise ContainerError(TOO_COMPLEX)
            if end - offset < 8:
                raise ContainerError(MP4_DAMAGED)
            size, kind = struct.unpack_from(">I4s", data, offset)
            header = 8
            if size == 1:  # a 64-bit size follows the type
                if end - offset < 16:
                    raise ContainerError(MP4_DAMAGED)
                size = struct.unpack_from(">Q", data, offset + 8)[0]
                header = 16
            elif size == 0:  # the last box: to the end of its parent
                size = end - offset
            if not header <= size <= end - offset:
                raise ContainerError(MP4_DAMAGED)
            yield kind, offset + header, offset + size
            offset += size

    def full_box(self, start: int, end: int, *, fixed: int) -> tuple[int, int]:
        """Return the version and flags of a full box whose body (after them) must hold
        at least `fixed` bytes."""
        if end - start < 4 + fixed:
            raise ContainerError(MP4_DAMAGED)
        word = struct.unpack_from(">I", self.data, start)[0]
        return word >> 24, word & 0xFFFFFF

    def timescale_and_duration(self, start: int, end: int) -> tuple[int, int | None]:
        """Return the timescale and duration of an `mvhd` or `mdhd` (None: unknown)."""
        version, _flags = self.full_box(start, end, fixed=0)
        if version == 1:
            self.full_box(start, end, fixed=28)
            timescale, duration = struct.unpack_from(">IQ", self.data, start + 4 + 16)
            unknown = duration == _UNKNOWN_64
        elif version == 0:
            self.full_box(start, end, fixed=16)
            timescale, duration = struct.unpack_from(">II", self.data, start + 4 + 8)
            unknown = duration == _UNKNOWN_32
        else:
            raise ContainerError(MP4_DAMAGED)
        if timescale == 0:
            raise ContainerError(MP4_DAMAGED)
        return timescale, None if unknown else duration


class _Track:
    """What one track of an MP4 says of its length, in its own timescale."""

    def __init__(self) -> None:
        self.track_id = 0
        self.timescale = 0
        self.duration = 0  # mdhd
        self.samples = 0  # the sample table's durations, then the fragments'
        self.default_sample_duration = 0  # trex
        self.frames = 0  # the sample table's samples, then the fragments'
        self.floor: Floor | None = None  # its sample entries' codec, if known


def mp4_seconds(data: bytes) -> Fraction:
    """Return the length of an MP4 file: the longest of its movie header (`mvhd`, or
    `mehd` of a fragmented file) and each track's media header (`mdhd`) and samples (the
    `stts` table, and the `trun` runs of each fragment), and at least the floor of each
    audio track's number of samples (`stsz`, `stts`, `trun`) whatever their durations."""
    boxes = _Boxes(data)
    lengths: list[Fraction] = []
    tracks: dict[int, _Track] = {}
    has_movie = False
    for kind, start, end in boxes.children(0, len(data)):
        if kind == b"moov":
            if has_movie:
                raise ContainerError(MP4_DAMAGED)
            has_movie = True
            lengths.extend(_mp4_movie(boxes, start, end, tracks))
        elif kind == b"moof":
            if not has_movie:
                raise ContainerError(MP4_DAMAGED)
            _mp4_fragment(boxes, start, end, tracks)
    if not has_movie:
        raise ContainerError(MP4_DAMAGED)
    for track in tracks.values():
        lengths.append(Fraction(max(track.duration, track.samples), track.timescale))
        if track.floor is not None:
            lengths.append(track.floor.seconds(track.frames))
    return max(lengths, default=Fraction(0))


def _mp4_movie(boxes: _Boxes, start: int, end: int, tracks: dict[int, _Track]) -> list[Fraction]:
    """Read a `moov`: return its movie lengths, and fill in its tracks."""
    lengths = []
    movie_timescale = 0
    fragment_duration = None
    defaults: dict[int, int] = {}
    for kind, body, body_end in boxes.children(start, end):
        if kind == b"mvhd":
            movie_timescale, duration = boxes.timescale_and_duration(body, body_end)
            if duration is not None:
                lengths.append(Fraction(duration, movie_timescale))
        elif kind == b"trak":
            track = _mp4_track(boxes, body, body_end)
            if track.track_id in tracks:
                raise ContainerError(MP4_DAMAGED)
            tracks[track.track_id] = track
        elif kind == b"mvex":
            fragment_duration = _mp4_movie_extends(boxes, body, body_end, defaults)
    if not movie_timescale:
        raise ContainerError(MP4_DAMAGED)
    if fragment_duration is not None:
        lengths.append(Fraction(fragment_duration, movie_timescale))
    for track_id, duration in defaults.items():
        if track_id in tracks:
            tracks[track_id].default_sample_duration = duration
    return lengths


def _mp4_movie_extends(boxes: _Boxes, start: int, end: int, defaults: dict[int, int]) -> int | None:
    """Read an `mvex`: return the fragmented movie's duration (`mehd`), if it says one,
    and note each track's default sample duration (`trex`)."""
    fragment_duration = None
    for kind, body, body_end in boxes.children(start, end):
        if kind == b"mehd":
            version, _flags = boxes.full_box(body, body_end, fixed=4)
            if version == 1:
                boxes.full_box(body, body_end, fixed=8)
                fragment_duration = struct.unpack_from(">Q", boxes.data, body + 4)[0]
            else:
                fragment_duration = struct.unpack_from(">I", boxes.data, body + 4)[0]
        elif kind == b"trex":
            boxes.full_box(body, body_end, fixed=12)
            track_id, _index, duration = struct.unpack_from(">III", boxes.data, body + 4)
            defaults[track_id] = duration
    return fragment_duration


def _mp4_track(boxes: _Boxes, start: int, end: int) -> _Track:
    """Read a `trak`: its id (`tkhd`), timescale and duration (`mdhd`), and the sum of its
    sample durations (`mdia/minf/stbl/stts`)."""
    track = _Track()
    has_header = False
    for kind, body, body_end in boxes.children(start, end):
        if kind == b"tkhd":
            version, _flags = boxes.full_box(body, body_end, fixed=12)
            skip = 16 if version == 1 else 8  # creation and modification times
            boxes.full_box(body, body_end, fixed=skip + 4)
            track.track_id = struct.unpack_from(">I", boxes.data, body + 4 + skip)[0]
            has_header = True
        elif kind == b"mdia":
            _mp4_media(boxes, body, body_end, track)
    if not has_header or not track.timescale:
        raise ContainerError(MP4_DAMAGED)
    return track


def _mp4_media(boxes: _Boxes, start: int, end: int, track: _Track) -> None:
    for kind, body, body_end in boxes.children(start, end):
        if kind == b"mdhd":
            track.timescale, duration = boxes.timescale_and_duration(body, body_end)
            track.duration = duration or 0
        elif kind == b"minf":
            for inner, inner_body, inner_end in boxes.children(body, body_end):
                if inner == b"stbl":
                    _mp4_sample_table(boxes, inner_body, inner_end, track)


def _mp4_sample_table(boxes: _Boxes, start: int, end: int, track: _Track) -> None:
    """Read an `stbl`: the durations and number of its samples (`stts`; `stsz` or `stz2`
    count them too, and the larger count is the one a decoder may play) and their codec
    (`stsd`)."""
    counts = [0]
    for table, body, body_end in boxes.children(start, end):
        if table == b"stts":
            duration, count = _mp4_time_to_sample(boxes, body, body_end)
            track.samples += duration
            counts[0] += count
        elif table in (b"stsz", b"stz2"):
            boxes.full_box(body, body_end, fixed=8)
            counts.append(struct.unpack_from(">I", boxes.data, body + 8)[0])
        elif table == b"stsd":
            track.floor = _mp4_sample_descriptions(boxes, body, body_end)
    track.frames += max(counts)


def _mp4_time_to_sample(boxes: _Boxes, start: int, end: int) -> tuple[int, int]:
    """Return the sum of an `stts` table's sample counts times their durations, and of
    its sample counts."""
    boxes.full_box(start, end, fixed=4)
    count = struct.unpack_from(">I", boxes.data, start + 4)[0]
    table = start + 8
    if count > (end - table) // 8:
        raise ContainerError(MP4_DAMAGED)
    entries = list(struct.iter_unpack(">II", boxes.data[table : table + 8 * count]))
    return sum(samples * duration for samples, duration in entries), sum(
        samples for samples, _duration in entries
    )


def _mp4_sample_descriptions(boxes: _Boxes, start: int, end: int) -> Floor | None:
    """Return the floor of an `stsd`'s sample entries (the lowest, if several), or None
    if one of them is not a codec known here (video, ALAC, FLAC, …) or does not read: a
    file a decoder could not read either. Its boxes were never needed for the length,
    so a damaged one is not a reason to refuse the file here."""
    floors = []
    try:
        boxes.full_box(start, end, fixed=4)
        for kind, body, body_end in boxes.children(start + 8, end):
            floor = _mp4_sample_entry(boxes, kind, body, body_end)
            if floor is None:
                return None
            floors.append(floor)
    except ContainerError as error:
        if error.message == TOO_COMPLEX:
            raise
        return None
    return min(floors, key=lambda floor: floor.frame, default=None)


# The bytes of an AudioSampleEntry before its boxes, by its (QuickTime) version.
_AUDIO_ENTRY_SIZES = {0: 28, 1: 44, 2: 64}


def _mp4_sample_entry(boxes: _Boxes, kind: bytes, start: int, end: int) -> Floor | None:
    if kind == b"Opus":
        return Floor(OPUS_SHORTEST)
    if kind == b".mp3":
        return Floor(MPEG_AUDIO_SHORTEST)
    if kind != b"mp4a" or end - start < 10:
        return None
    size = _AUDIO_ENTRY_SIZES.get(struct.unpack_from(">H", boxes.data, start + 8)[0])
    if size is None:
        return None
    for child, body, body_end in boxes.children(start + size, end):
        if child == b"wave":  # QuickTime puts the esds in a wave box
            for inner, inner_body, inner_end in boxes.children(body, body_end):
                if inner == b"esds":
                    return _mp4_elementary_stream(boxes.data[inner_body:inner_end])
        elif child == b"esds":
            return _mp4_elementary_stream(boxes.data[body:body_end])
    return None


# MPEG-4 descriptors (ISO/IEC 14496-1, 7.2.6) in an esds, and the object types of MPEG
# audio in its DecoderConfigDescriptor.
_ES_DESCRIPTOR = 0x03
_DECODER_CONFIG = 0x04
_DECODER_SPECIFIC = 0x05
_AAC_OBJECTS = frozenset({0x40, 0x66, 0x67, 0x68})  # MPEG-4 audio, MPEG-2 AAC
_MPEG_AUDIO_OBJECTS = frozenset({0x69, 0x6B})  # MPEG-2 and MPEG-1 audio (MP3, …)


def _descriptors(esds: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield the tag, body start and end of each descriptor from `start` to `end` (a
    size of up to 4 bytes of 7 bits); stop at one that does not fit."""
    offset = start
    while offset + 2 <= end:
        tag = esds[offset]
        size = 0
        offset += 1
        for _ in range(4):
            if offset >= end:
                return
            size = size << 7 | esds[offset] & 0x7F
            offset += 1
            if not esds[offset - 1] & 0x80:
                break
        if size > end - offset:
            return
        yield tag, offset, offset + size
        offset += size


def _mp4_elementary_stream(esds: bytes) -> Floor | None:
    """Return the floor of an `esds` (after its version and flags): AAC by its
    AudioSpecificConfig, MPEG-1/2 audio by its shortest frame, else None."""
    for tag, body, end in _descriptors(esds, 4, len(esds)):
        if tag != _ES_DESCRIPTOR or end - body < 3:
            continue
        flags = esds[body + 2]
        offset = body + 3 + 2 * bool(flags & 0x80)  # dependsOn_ES_ID
        if flags & 0x40:  # a URL, after its length
            offset += 1 + (esds[offset] if offset < end else 0)
        offset += 2 * bool(flags & 0x20)  # OCR_ES_ID
        for inner, inner_body, inner_end in _descriptors(esds, offset, end):
            if inner != _DECODER_CONFIG or inner_end - inner_body < 13:
                continue
            object_type = esds[inner_body]
            if object_type in _MPEG_AUDIO_OBJECTS:
                return Floor(MPEG_AUDIO_SHORTEST)
            if object_type not in _AAC_OBJECTS:
                return None
            for info, info_body, info_end in _descriptors(esds, inner_body + 13, inner_end):
                if info == _DECODER_SPECIFIC:
                    return _aac_floor(esds[info_body:info_end])
            return None
    return None


# trun's flags: which fields each sample has (ISO/IEC 14496-12, 8.8.8).
_TRUN_DATA_OFFSET = 0x1
_TRUN_FIRST_SAMPLE_FLAGS = 0x4
_TRUN_SAMPLE_FIELDS = (0x100, 0x200, 0x400, 0x800)  # duration, size, flags, composition
# tfhd's flags: which optional fields follow the track id, and their sizes.
_TFHD_FIELDS = ((0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4), (0x20, 4))
_TFHD_DEFAULT_DURATION = 0x8


def _mp4_fragment(boxes: _Boxes, start: int, end: int, tracks: dict[int, _Track]) -> None:
    """Read a `moof`: add each track fragment's sample durations to its track."""
    for kind, body, body_end in boxes.children(start, end):
        if kind != b"traf":
            continue
        track: _Track | None = None
        default_duration = 0
        for inner, inner_body, inner_end in boxes.children(body, body_end):
            if inner == b"tfhd":
                track, default_duration = _mp4_fragment_header(boxes, inner_body, inner_end, tracks)
            elif inner == b"trun":
                if track is None:
                    raise ContainerError(MP4_DAMAGED)
                duration, count = _mp4_track_run(boxes, inner_body, inner_end, default_duration)
                track.samples += duration
                track.frames += count


def _mp4_fragment_header(
    boxes: _Boxes, start: int, end: int, tracks: dict[int, _Track]
) -> tuple[_Track, int]:
    """Read a `tfhd`: return its track and the fragment's default sample duration."""
    _version, flags = boxes.full_box(start, end, fixed=4)
    track = tracks.get(struct.unpack_from(">I", boxes.data, start + 4)[0])
    if track is None:
        raise ContainerError(MP4_DAMAGED)
    offset = 8
    default_duration = track.default_sample_duration
    for flag, size in _TFHD_FIELDS:
        if flags & flag:
            boxes.full_box(start, end, fixed=offset - 4 + size)
            if flag == _TFHD_DEFAULT_DURATION:
                default_duration = struct.unpack_from(">I", boxes.data, start + offset)[0]
            offset += size
    return track, default_duration


def _mp4_track_run(boxes: _Boxes, start: int, end: int, default_duration: int) -> tuple[int, int]:
    """Return the sum of a `trun`'s sample durations (each its own, or the default), and
    its number of samples."""
    _version, flags = boxes.full_box(start, end, fixed=4)
    count = struct.unpack_from(">I", boxes.data, start + 4)[0]
    offset = start + 8
    offset += 4 * bool(flags & _TRUN_DATA_OFFSET) + 4 * bool(flags & _TRUN_FIRST_SAMPLE_FLAGS)
    stride = 4 * sum(bool(flags & field) for field in _TRUN_SAMPLE_FIELDS)
    if offset > end or (stride and count > (end - offset) // stride):
        raise ContainerError(MP4_DAMAGED)
    if not flags & _TRUN_SAMPLE_FIELDS[0]:
        return count * default_duration, count
    records = struct.iter_unpack(f">{stride // 4}I", boxes.data[offset : offset + count * stride])
    return sum(record[0] for record in records), count


# --- Matroska (WebM) -------------------------------------------------------------------

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_TRACKS = 0x1654AE6B
_TRACK_ENTRY = 0xAE
_TRACK_NUMBER = 0xD7
_CODEC_ID = 0x86
_CODEC_PRIVATE = 0x63A2
_DEFAULT_DURATION = 0x23E383
_CLUSTER = 0x1F43B675
_CLUSTER_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_BLOCK_DURATION = 0x9B
_LACING = 0x06  # a block's flags: its lacing (none, Xiph, fixed-size, EBML)
# The Segment's children: one of them after a Cluster of unknown size ends that Cluster.
_SEGMENT_CHILDREN = frozenset(
    {
        0x114D9B74,  # SeekHead
        _INFO,
        _TRACKS,
        _CLUSTER,
        0x1C53BB6B,  # Cues
        0x1043A770,  # Chapters
        0x1941A469,  # Attachments
        0x1254C367,  # Tags
    }
)
_NANOSECONDS = 1_000_000_000
_DEFAULT_TIMECODE_SCALE = 1_000_000  # 1 ms


def is_matroska(data: bytes) -> bool:
    return data[:4] == EBML_MAGIC


class _Elements:
    """The elements of one Matroska file, read within their parents' bounds, counted."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.left = MAX_ELEMENTS

    def vint(self, offset: int, end: int, *, keep_marker: bool) -> tuple[int, int, bool]:
        """Return a variable-size integer at `offset`, its length and whether all its
        value bits are ones (an unknown size)."""
        if offset >= end:
            raise ContainerError(MATROSKA_DAMAGED)
        first = self.data[offset]
        length = 9 - first.bit_length() if first else 9
        if length > 8 or offset + length > end:
            raise ContainerError(MATROSKA_DAMAGED)
        value = int.from_bytes(self.data[offset : offset + length], "big")
        value_bits = 7 * length
        unknown = value & ((1 << value_bits) - 1) == (1 << value_bits) - 1
        if not keep_marker:
            value &= (1 << value_bits) - 1
        return value, length, unknown

    def children(self, start: int, end: int) -> Iterator[tuple[int, int, int, bool]]:
        """Yield the id, body start and end of each element from `start` to `end`, and
        whether its size was unknown (its end is then `end`)."""
        offset = start
        while offset < end:
            self.left -= 1
            if self.left < 0:
                raise ContainerError(TOO_COMPLEX)
            element, id_length, _unknown = self.vint(offset, end, keep_marker=True)
            if id_length > 4:
                raise ContainerError(MATROSKA_DAMAGED)
            size, size_length, unknown = self.vint(offset + id_length, end, keep_marker=False)
            body = offset + id_length + size_length
            if unknown:
                yield element, body, end, True
                return
            if size > end - body:
                raise ContainerError(MATROSKA_DAMAGED)
            yield element, body, body + size, False
            offset = body + size

    def unsigned(self, start: int, end: int) -> int:
        if end - start > 8:
            raise ContainerError(MATROSKA_DAMAGED)
        return int.from_bytes(self.data[start:end], "big")

    def duration(self, start: int, end: int) -> Fraction:
        """Return a float element's value exactly (4 or 8 bytes), or refuse one that is
        not a finite number of at least zero."""
        if end - start == 8:
            (value,) = struct.unpack_from(">d", self.data, start)
        elif end - start == 4:
            (value,) = struct.unpack_from(">f", self.data, start)
        else:
            raise ContainerError(MATROSKA_DAMAGED)
        if not 0 <= value < float("inf"):  # NaN is refused too
            raise ContainerError(MATROSKA_DAMAGED)
        return Fraction(value)


def matroska_seconds(data: bytes) -> Fraction:
    """Return the length of a Matroska (WebM) file: the longest of its `Duration` (Info,
    in TimecodeScale units) and the end of its latest block (its Cluster's Timecode plus
    its own, plus its BlockDuration, else its track's DefaultDuration when the file gives
    one; a browser's recording often has no Duration), and at least the floor of each
    audio track's number of frames, whatever their timecodes."""
    elements = _Elements(data)
    children = elements.children(0, len(data))
    header = next(children, None)
    if header is None or header[0] != int.from_bytes(EBML_MAGIC, "big"):
        raise ContainerError(MATROSKA_DAMAGED)
    for element, start, end, _unknown in children:
        if element == _SEGMENT:
            return _matroska_segment(elements, start, end)
    raise ContainerError(MATROSKA_DAMAGED)


@dataclass(frozen=True, slots=True)
class _Block:
    timecode: int  # in TimecodeScale units, from the segment's start
    duration: int | None  # its BlockDuration, in the same units, if it has one
    track: int


class _Segment:
    """What a Matroska segment says of its length, read in one pass."""

    def __init__(self) -> None:
        self.timecode_scale = _DEFAULT_TIMECODE_SCALE  # ns
        self.duration: Fraction | None = None  # in TimecodeScale units
        self.default_durations: dict[int, int] = {}  # track number → ns
        self.latest: _Block | None = None
        self.floors: dict[int, Floor] = {}  # track number → its codec's floor, if known
        self.frames: dict[int, int] = {}  # track number → frames in its blocks

    def block(self, block: _Block, frames: int) -> None:
        if self.latest is None or block.timecode >= self.latest.timecode:
            self.latest = block
        self.frames[block.track] = self.frames.get(block.track, 0) + frames

    def floor(self) -> Fraction:
        """Return the longest floor of a track's frames, in seconds."""
        floors = [floor.seconds(self.frames.get(track, 0)) for track, floor in self.floors.items()]
        return max(floors, default=Fraction(0))

    def nanoseconds(self) -> Fraction:
        scale = self.timecode_scale
        lengths = []
        if self.duration is not None:
            lengths.append(self.duration * scale)
        block = self.latest
        if block is not None:
            if block.duration is not None:
                lasts = block.duration * scale
            else:
                lasts = self.default_durations.get(block.track, 0)
            lengths.append(Fraction(block.timecode * scale + lasts))
        if not lengths:
            raise ContainerError(MATROSKA_DAMAGED)
        return max(lengths)


def _matroska_segment(elements: _Elements, start: int, end: int) -> Fraction:
    segment = _Segment()
    children = elements.children(start, end)
    item = next(children, None)
    while item is not None:
        element, body, body_end, unknown = item
        if element == _CLUSTER and unknown:
            # A live recording's Cluster of unknown size ends where the next child of
            # the Segment begins: read on from there with the Cluster's own reading.
            children = elements.children(body, body_end)
            item = _matroska_cluster(elements, children, segment, ends_at_sibling=True)
            continue
        if element == _INFO:
            _matroska_info(elements, body, body_end, segment)
        elif element == _TRACKS:
            _matroska_tracks(elements, body, body_end, segment)
        elif element == _CLUSTER:
            _matroska_cluster(
                elements, elements.children(body, body_end), segment, ends_at_sibling=False
            )
        item = next(children, None)
    return max(segment.nanoseconds() / _NANOSECONDS, segment.floor())


def _matroska_info(elements: _Elements, start: int, end: int, segment: _Segment) -> None:
    for element, body, body_end, _unknown in elements.children(start, end):
        if element == _TIMECODE_SCALE:
            segment.timecode_scale = elements.unsigned(body, body_end)
            if not segment.timecode_scale:
                raise ContainerError(MATROSKA_DAMAGED)
        elif element == _DURATION:
            segment.duration = elements.duration(body, body_end)


def _matroska_tracks(elements: _Elements, start: int, end: int, segment: _Segment) -> None:
    for element, body, body_end, _unknown in elements.children(start, end):
        if element != _TRACK_ENTRY:
            continue
        number = default_duration = 0
        codec = private = b""
        for inner, inner_body, inner_end, _inner_unknown in elements.children(body, body_end):
            if inner == _TRACK_NUMBER:
                number = elements.unsigned(inner_body, inner_end)
            elif inner == _DEFAULT_DURATION:
                default_duration = elements.unsigned(inner_body, inner_end)
            elif inner == _CODEC_ID:
                codec = elements.data[inner_body:inner_end]
            elif inner == _CODEC_PRIVATE:
                private = elements.data[inner_body:inner_end]
        segment.default_durations[number] = default_duration
        floor = _matroska_floor(codec.rstrip(b"\0"), private)
        if floor is not None:
            segment.floors[number] = floor


def _matroska_floor(codec: bytes, private: bytes) -> Floor | None:
    """Return the floor of a track by its CodecID and CodecPrivate: Opus less its
    pre-skip (OpusHead), Vorbis by its shortest block at its rate (its identification
    header, what a decoder plays it at), AAC by its AudioSpecificConfig, MPEG audio;
    None for another codec or one whose header does not read."""
    if codec == b"A_OPUS":
        pre_skip = 0
        if private[:8] == b"OpusHead" and len(private) >= 12:
            pre_skip = int.from_bytes(private[10:12], "little")
        return Floor(OPUS_SHORTEST, lead=Fraction(pre_skip, 48_000))
    if codec == b"A_VORBIS":
        return _vorbis_floor(private)
    if codec == b"A_AAC":
        return _aac_floor(private)
    if codec in (b"A_MPEG/L1", b"A_MPEG/L2", b"A_MPEG/L3"):
        return Floor(MPEG_AUDIO_SHORTEST)
    return None


def _vorbis_floor(private: bytes) -> Floor | None:
    """Return the floor of a Vorbis track from its CodecPrivate (three Xiph-laced
    headers, the identification header first): a packet plays at least half its short
    block (a quarter of the previous block and of its own), at the header's rate, and
    the first plays nothing."""
    if len(private) < 2:
        return None
    offset = 1
    for _ in range(private[0]):  # the sizes of all headers but the last
        while offset < len(private) and private[offset] == 255:
            offset += 1
        offset += 1
    header = private[offset : offset + 30]
    if len(header) < 30 or header[:7] != b"\x01vorbis":
        return None
    rate = int.from_bytes(header[12:16], "little")
    exponent = header[28] & 0x0F
    if not rate or not 6 <= exponent <= 13:
        return None
    frame = Fraction(2**exponent // 2, rate)
    return Floor(frame, lead=frame)


def _matroska_cluster(
    elements: _Elements,
    children: Iterator[tuple[int, int, int, bool]],
    segment: _Segment,
    *,
    ends_at_sibling: bool,
) -> tuple[int, int, int, bool] | None:
    """Read a Cluster's blocks into `segment`; for one of unknown size, return the child
    of the Segment that ended it (None: the file ended)."""
    cluster_timecode = 0
    for item in children:
        element, body, body_end, _unknown = item
        if ends_at_sibling and element in _SEGMENT_CHILDREN:
            return item
        if element == _CLUSTER_TIMECODE:
            cluster_timecode = elements.unsigned(body, body_end)
        elif element == _SIMPLE_BLOCK:
            timecode, track, frames = _matroska_block(elements, body, body_end, cluster_timecode)
            segment.block(_Block(timecode, None, track), frames)
        elif element == _BLOCK_GROUP:
            found = None
            duration = None
            for inner, inner_body, inner_end, _u in elements.children(body, body_end):
                if inner == _BLOCK:
                    found = _matroska_block(elements, inner_body, inner_end, cluster_timecode)
                elif inner == _BLOCK_DURATION:
                    duration = elements.unsigned(inner_body, inner_end)
            if found is not None:
                segment.block(_Block(found[0], duration, found[1]), found[2])
    return None


def _matroska_block(
    elements: _Elements, start: int, end: int, cluster_timecode: int
) -> tuple[int, int, int]:
    """Return a block's timecode (its Cluster's Timecode plus its own signed 16-bit
    offset), its track number and its number of frames (a laced block, Xiph, EBML or
    fixed-size, says its count less one in the byte after its flags)."""
    track, length, _unknown = elements.vint(start, end, keep_marker=False)
    if start + length + 2 > end:
        raise ContainerError(MATROSKA_DAMAGED)
    (relative,) = struct.unpack_from(">h", elements.data, start + length)
    frames = 1
    flags = start + length + 2
    if flags < end and elements.data[flags] & _LACING:
        if flags + 1 >= end:
            raise ContainerError(MATROSKA_DAMAGED)
        frames = elements.data[flags + 1] + 1
    return max(0, cluster_timecode + relative), track, frames
