"""The length of a recording in a container: MP4 (ISO base media: .m4a, .mp4, .mov) and
Matroska (.webm, .mka), read from the file's own structure, exactly, as a fraction of
seconds (`relay.media.audio_seconds` rounds it up to whole seconds, never through a float
sum).

A container says its length in a header that a client writes (MP4's `mvhd`, Matroska's
`Duration`), but players play what the file holds: the sample tables and fragments of an
MP4, the blocks of a Matroska file. Both are read and the longest counts, so a header
that claims less than the file plays is not a cheaper call.

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


def mp4_seconds(data: bytes) -> Fraction:
    """Return the length of an MP4 file: the longest of its movie header (`mvhd`, or
    `mehd` of a fragmented file) and each track's media header (`mdhd`) and samples (the
    `stts` table, and the `trun` runs of each fragment)."""
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
                    for table, table_body, table_end in boxes.children(inner_body, inner_end):
                        if table == b"stts":
                            track.samples += _mp4_time_to_sample(boxes, table_body, table_end)


def _mp4_time_to_sample(boxes: _Boxes, start: int, end: int) -> int:
    """Return the sum of an `stts` table's sample counts times their durations."""
    boxes.full_box(start, end, fixed=4)
    count = struct.unpack_from(">I", boxes.data, start + 4)[0]
    table = start + 8
    if count > (end - table) // 8:
        raise ContainerError(MP4_DAMAGED)
    entries = struct.iter_unpack(">II", boxes.data[table : table + 8 * count])
    return sum(samples * duration for samples, duration in entries)


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
                track.samples += _mp4_track_run(boxes, inner_body, inner_end, default_duration)


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


def _mp4_track_run(boxes: _Boxes, start: int, end: int, default_duration: int) -> int:
    """Return the sum of a `trun`'s sample durations (each its own, or the default)."""
    _version, flags = boxes.full_box(start, end, fixed=4)
    count = struct.unpack_from(">I", boxes.data, start + 4)[0]
    offset = start + 8
    offset += 4 * bool(flags & _TRUN_DATA_OFFSET) + 4 * bool(flags & _TRUN_FIRST_SAMPLE_FLAGS)
    stride = 4 * sum(bool(flags & field) for field in _TRUN_SAMPLE_FIELDS)
    if offset > end or (stride and count > (end - offset) // stride):
        raise ContainerError(MP4_DAMAGED)
    if not flags & _TRUN_SAMPLE_FIELDS[0]:
        return count * default_duration
    records = struct.iter_unpack(f">{stride // 4}I", boxes.data[offset : offset + count * stride])
    return sum(record[0] for record in records)


# --- Matroska (WebM) -------------------------------------------------------------------

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_TRACKS = 0x1654AE6B
_TRACK_ENTRY = 0xAE
_TRACK_NUMBER = 0xD7
_DEFAULT_DURATION = 0x23E383
_CLUSTER = 0x1F43B675
_CLUSTER_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_BLOCK_DURATION = 0x9B
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
    one; a browser's recording often has no Duration)."""
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

    def block(self, block: _Block) -> None:
        if self.latest is None or block.timecode >= self.latest.timecode:
            self.latest = block

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
    return segment.nanoseconds() / _NANOSECONDS


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
        for inner, inner_body, inner_end, _inner_unknown in elements.children(body, body_end):
            if inner == _TRACK_NUMBER:
                number = elements.unsigned(inner_body, inner_end)
            elif inner == _DEFAULT_DURATION:
                default_duration = elements.unsigned(inner_body, inner_end)
        segment.default_durations[number] = default_duration


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
            timecode, track = _matroska_block(elements, body, body_end, cluster_timecode)
            segment.block(_Block(timecode, None, track))
        elif element == _BLOCK_GROUP:
            found = None
            duration = None
            for inner, inner_body, inner_end, _u in elements.children(body, body_end):
                if inner == _BLOCK:
                    found = _matroska_block(elements, inner_body, inner_end, cluster_timecode)
                elif inner == _BLOCK_DURATION:
                    duration = elements.unsigned(inner_body, inner_end)
            if found is not None:
                segment.block(_Block(found[0], duration, found[1]))
    return None


def _matroska_block(
    elements: _Elements, start: int, end: int, cluster_timecode: int
) -> tuple[int, int]:
    """Return a block's timecode (its Cluster's Timecode plus its own signed 16-bit
    offset) and its track number."""
    track, length, _unknown = elements.vint(start, end, keep_marker=False)
    if start + length + 2 > end:
        raise ContainerError(MATROSKA_DAMAGED)
    (relative,) = struct.unpack_from(">h", elements.data, start + length)
    return max(0, cluster_timecode + relative), track
