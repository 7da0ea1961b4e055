"""The length of MP4 (M4A) and WebM (Matroska) recordings: exact from files built here box
by box and element by element, the same from files a real encoder (ffmpeg) wrote, and any
hostile or damaged file refused with a clear 400, never another exception."""

import math
import shutil
import struct
import subprocess
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.containers import MAX_BOXES
from relay.http import RelayError
from relay.media import MAX_RECORDING_SECONDS, audio_seconds

# --- MP4, box by box ---------------------------------------------------------------------


def box(kind: bytes, body: bytes = b"", *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + body)


def header(kind: bytes, timescale: int, duration: int, *, version: int = 0) -> bytes:
    """An `mvhd` or `mdhd`: times of creation and modification, timescale, duration."""
    if version == 1:
        return full(kind, 1, 0, struct.pack(">QQIQ", 0, 0, timescale, duration) + b"\0" * 80)
    # Version 0, or another the format does not have, with version 0's layout.
    return full(kind, version, 0, struct.pack(">IIII", 0, 0, timescale, duration) + b"\0" * 80)


def descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 descriptor of an esds, its size in 4 bytes of 7 bits (as ffmpeg writes)."""
    return bytes([tag, 0x80, 0x80, 0x80, len(body)]) + body


def mp4a(config: bytes, *, object_type: int = 0x40, rate: int = 44_100) -> bytes:
    """An AudioSampleEntry of AAC (or MPEG audio) with its esds and AudioSpecificConfig."""
    decoder = descriptor(0x04, bytes([object_type, 0x15]) + b"\0" * 11 + descriptor(0x05, config))
    esds = full(b"esds", 0, 0, descriptor(0x03, b"\0\0\0" + decoder + descriptor(0x06, b"\2")))
    entry = b"\0" * 6 + struct.pack(">HHH4sHHHHI", 1, 0, 0, b"", 2, 16, 0, 0, rate << 16)
    return box(b"mp4a", entry + esds)


# AudioSpecificConfigs: AAC-LC at 44.1 kHz, AAC-LD at 48 kHz, CELP at 8 kHz (object types
# 2, 23, 8), each of one or two channels.
AAC_LC_44K = b"\x12\x10"
AAC_LD_48K = b"\xb9\x88"
CELP_8K = b"\x45\x88"
OPUS_ENTRY = box(b"Opus", b"\0" * 6 + struct.pack(">HQHHHHI", 1, 0, 2, 16, 0, 0, 48_000 << 16))


def track(
    track_id: int,
    timescale: int,
    duration: int,
    stts: list[tuple[int, int]],
    version: int = 0,
    entry: bytes = b"",
    tables: bytes = b"",
) -> bytes:
    tkhd = full(b"tkhd", 0, 3, struct.pack(">III", 0, 0, track_id) + b"\0" * 68)
    table = full(
        b"stts",
        0,
        0,
        struct.pack(">I", len(stts)) + b"".join(struct.pack(">II", *entry) for entry in stts),
    )
    stsd = full(b"stsd", 0, 0, struct.pack(">I", 1 if entry else 0) + entry)
    stbl = box(b"stbl", stsd + table + tables)
    media = box(
        b"mdia",
        header(b"mdhd", timescale, duration, version=version)
        + box(b"hdlr", b"\0" * 24)
        + box(b"minf", stbl),
    )
    return box(b"trak", tkhd + media)


def m4a(
    *,
    movie: tuple[int, int] = (1000, 61_250),
    samples: tuple[int, int, list[tuple[int, int]]] = (44_100, 0, [(2_637, 1024)]),
    version: int = 0,
    large: bool = False,
    entry: bytes = b"",
    tables: bytes = b"",
) -> bytes:
    """An M4A of one audio track: by default 61.25 s in its movie header, and 2,637 AAC
    frames of 1,024 samples at 44.1 kHz (61.23 s) in its sample table."""
    moov = box(
        b"moov",
        header(b"mvhd", *movie, version=version)
        + track(1, *samples, version=version, entry=entry, tables=tables),
        large=large,
    )
    return box(b"ftyp", b"M4A \0\0\0\0isomM4A ") + moov + box(b"mdat", b"\0" * 64, large=large)


def fragmented(
    runs: list[list[int]],
    *,
    default: int = 1024,
    mehd: int | None = None,
    entry: bytes = b"",
    explicit: bool = False,
) -> bytes:
    """A fragmented M4A: an empty sample table, then one fragment per run of samples, each
    sample's duration in the run (0: the track's default, `trex`, unless `explicit`)."""
    mvex = full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, default, 0, 0))
    if mehd is not None:
        mvex = full(b"mehd", 1, 0, struct.pack(">Q", mehd)) + mvex
    trak = track(1, 48_000, 0, [], entry=entry)
    moov = box(b"moov", header(b"mvhd", 1000, 0) + trak + box(b"mvex", mvex))
    fragments = b""
    for run in runs:
        tfhd = full(b"tfhd", 0, 0x020000, struct.pack(">I", 1))
        if explicit or all(run):
            trun = full(
                b"trun",
                0,
                0x301,
                struct.pack(">Ii", len(run), 0)
                + b"".join(struct.pack(">II", length, 100) for length in run),
            )
        else:
            trun = full(b"trun", 0, 0x200, struct.pack(">I", len(run)) + b"\0\0\0\x64" * len(run))
        fragments += box(b"moof", full(b"mfhd", 0, 0, b"\0\0\0\1") + box(b"traf", tfhd + trun))
        fragments += box(b"mdat", b"\0" * 100 * len(run))
    return box(b"ftyp", b"iso5\0\0\0\0iso5") + moov + fragments


def refusal(data: bytes) -> RelayError:
    with pytest.raises(RelayError) as raised:
        audio_seconds(data)
    assert (raised.value.status_code, raised.value.code) == (400, "unsupported_audio_format")
    return raised.value


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("large", [False, True])
def test_an_m4a_is_as_long_as_its_movie_header_says(version, large):
    assert audio_seconds(m4a(version=version, large=large)) == 62  # 61.25 s


def test_a_movie_header_that_says_less_than_the_samples_hold_is_not_cheaper():
    # 3 s in the movie and media headers, 2 minutes of samples in the table.
    data = m4a(movie=(1000, 3_000), samples=(48_000, 144_000, [(5_625, 1024)]))

    assert audio_seconds(data) == 120


def test_a_duration_of_all_ones_is_unknown_and_the_samples_count():
    data = m4a(movie=(1000, 0xFFFFFFFF), samples=(8_000, 0, [(10, 8_000), (1, 4_000)]))

    assert audio_seconds(data) == 11  # 10.5 s


def test_a_fragmented_m4a_counts_its_fragments():
    # 3 fragments: 50 samples of the default 1,024, then 20 of 960 and 30 of 2,048, at 48 kHz.
    data = fragmented([[0] * 50, [960] * 20, [2_048] * 30])

    samples = 50 * 1024 + 20 * 960 + 30 * 2048
    assert audio_seconds(data) == math.ceil(Fraction(samples, 48_000)) == 3


def test_a_fragmented_m4a_with_a_longer_movie_extends_header():
    assert audio_seconds(fragmented([[0] * 5], mehd=90_500)) == 91


@pytest.mark.parametrize(
    ("entry", "floor"),
    [
        (mp4a(AAC_LC_44K), Fraction(480, 44_100)),
        (mp4a(AAC_LD_48K, rate=8_000), Fraction(480, 48_000)),  # the config's rate
        (mp4a(b"", object_type=0x6B), Fraction(384, 48_000)),  # MP3
        (OPUS_ENTRY, Fraction(1, 400)),
    ],
)
def test_samples_that_last_nothing_are_billed_as_the_shortest_frames_they_play(entry, floor):
    # One second in the movie header; 20,000 samples of duration 0 in the table.
    data = m4a(movie=(1000, 1000), samples=(44_100, 0, [(20_000, 0)]), entry=entry)

    assert audio_seconds(data) == math.ceil(20_000 * floor) > 1


def test_a_sample_table_says_its_samples_in_stsz_too():
    # One sample of duration 0 in `stts`, 20,000 samples of 100 bytes in `stsz`.
    stsz = full(b"stsz", 0, 0, struct.pack(">II", 100, 20_000))
    data = m4a(
        movie=(1000, 1000), samples=(44_100, 0, [(1, 0)]), entry=mp4a(AAC_LC_44K), tables=stsz
    )

    assert audio_seconds(data) == math.ceil(Fraction(20_000 * 480, 44_100)) == 218


@pytest.mark.parametrize("explicit", [False, True])
def test_fragments_of_samples_that_last_nothing_are_billed_as_their_frames(explicit):
    # Durations of 0 in each run (or the track's default of 0), Opus at 48 kHz.
    runs = [[0] * 2_000, [0] * 3_000]
    data = fragmented(runs, default=0, entry=OPUS_ENTRY, explicit=explicit)

    assert audio_seconds(data) == math.ceil(5_000 * Fraction(1, 400)) == 13


@pytest.mark.parametrize(
    ("stts", "entry", "billed"),
    [
        ([(1_000, 480)], mp4a(AAC_LD_48K), 10),  # AAC-LD of 10 s: its floor, exactly
        ([(2_637, 1024)], mp4a(AAC_LC_44K), 57),  # 56.26 s; its floor is 28.7 s
        ([(20_000, 0)], mp4a(CELP_8K), 1),  # not AAC: shorter frames, no floor
        ([(20_000, 0)], box(b"alac", b"\0" * 28), 1),  # a codec not known here
        ([(20_000, 0)], mp4a(AAC_LC_44K)[:-12], 1),  # an entry that does not read
    ],
)
def test_a_floor_never_bills_more_than_a_real_file_plays(stts, entry, billed):
    data = m4a(movie=(1000, 1000), samples=(48_000, 0, stts), entry=entry)

    assert audio_seconds(data) == billed


def test_the_last_box_may_run_to_the_end_of_the_file():
    data = m4a()
    assert audio_seconds(data[:-72] + struct.pack(">I4s", 0, b"mdat") + b"\0" * 64) == 62


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (box(b"ftyp", b"M4A "), "no movie"),
        (box(b"ftyp", b"M4A ") + struct.pack(">I4s", 4, b"moov"), "a box smaller than its header"),
        (box(b"ftyp", b"M4A ") + struct.pack(">I4s", 2**31, b"moov"), "a box past the end"),
        (box(b"ftyp") + struct.pack(">I4sQ", 1, b"moov", 2**64 - 1), "a 64-bit size past the end"),
        (box(b"ftyp") + struct.pack(">I4s", 1, b"moov") + b"\0\0", "a truncated 64-bit size"),
        (m4a(movie=(0, 1000)), "a timescale of zero"),
        (m4a(samples=(0, 1000, [])), "a track's timescale of zero"),
        (m4a()[:40], "truncated in the movie header"),
        (m4a(version=2), "an unknown version"),
        (b"\0\0\0\0ftyp" + b"\0" * 200, "NUL bytes to the end"),
        (box(b"ftyp") + box(b"moov", box(b"trak", b"\0" * 30)), "a track without a header"),
        (box(b"ftyp") + box(b"moov", header(b"mvhd", 1, 0)) * 2, "two movies"),
        (box(b"ftyp") + box(b"moof", b"") + box(b"moov"), "a fragment before the movie"),
    ],
)
def test_a_damaged_m4a_is_refused_with_a_clear_400(data, why):
    error = refusal(data)

    assert "MP4 (M4A)" in error.message, why
    assert "truncated or damaged" in error.message


def test_a_track_run_longer_than_its_box_is_refused():
    data = fragmented([[960] * 3])
    run_count = data.index(b"trun") + 8
    hostile = data[:run_count] + struct.pack(">I", 2**32 - 1) + data[run_count + 4 :]

    assert "truncated or damaged" in refusal(hostile).message


def test_a_sample_table_longer_than_its_box_is_refused():
    data = m4a()
    count = data.index(b"stts") + 8
    hostile = data[:count] + struct.pack(">I", 2**31) + data[count + 4 :]

    assert "truncated or damaged" in refusal(hostile).message


def test_a_file_of_too_many_boxes_is_refused_after_a_bounded_read():
    data = box(b"ftyp") + box(b"free") * (MAX_BOXES + 1) + m4a()

    assert "too many parts" in refusal(data).message


def test_a_recording_claiming_more_than_100_hours_is_refused():
    data = m4a(movie=(1, MAX_RECORDING_SECONDS + 1))

    assert "100 hours" in refusal(data).message


# --- Matroska, element by element ----------------------------------------------------------


def size(length: int, *, width: int = 8) -> bytes:
    """An EBML size of `width` bytes."""
    return (length | 1 << (7 * width)).to_bytes(width, "big")


UNKNOWN = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def element(element_id: int, body: bytes = b"", *, unknown: bool = False) -> bytes:
    identifier = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return identifier + (UNKNOWN if unknown else size(len(body))) + body


def uint(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def block(track_number: int, relative: int, frames: int = 1) -> bytes:
    """A block of one Opus frame, or of `frames` Xiph-laced ones (each of one byte)."""
    if frames == 1:
        return bytes([0x80 | track_number]) + struct.pack(">hB", relative, 0x80) + b"\xfc\0\0"
    lacing = bytes([frames - 1]) + b"\1" * (frames - 1)
    laced = struct.pack(">hB", relative, 0x82) + lacing + b"\xfc" * frames
    return bytes([0x80 | track_number]) + laced


EBML_HEADER = element(0x1A45DFA3, element(0x4282, b"webm"))


def webm(
    *,
    duration: bytes | None = struct.pack(">d", 61_250.0),
    scale: int | None = None,
    clusters: list[tuple[int, list[int]]] | None = None,
    default_duration: int | None = None,
    unknown: bool = False,
    group_duration: int | None = None,
    codec: bytes = b"A_OPUS",
    private: bytes | None = None,
    laced: int = 1,
) -> bytes:
    """A WebM of one Opus track: its Info (TimecodeScale, Duration), then Clusters of
    (Timecode, SimpleBlocks' relative timecodes); sizes unknown as a live recording's."""
    info = b""
    if scale is not None:
        info += uint(0x2AD7B1, scale)
    if duration is not None:
        info += element(0x4489, duration)
    entry = uint(0xD7, 1) + element(0x86, codec)
    if private is not None:
        entry += element(0x63A2, private)
    if default_duration is not None:
        entry += uint(0x23E383, default_duration)
    body = element(0x1549A966, info) + element(0x1654AE6B, element(0xAE, entry))
    for timecode, offsets in [(0, [0, 20, 40])] if clusters is None else clusters:
        blocks = b"".join(element(0xA3, block(1, offset, laced)) for offset in offsets)
        if group_duration is not None:
            blocks += element(
                0xA0, element(0xA1, block(1, offsets[-1])) + uint(0x9B, group_duration)
            )
        body += element(0x1F43B675, uint(0xE7, timecode) + blocks, unknown=unknown)
    body += element(0x1C53BB6B, b"")  # Cues
    return EBML_HEADER + element(0x18538067, body, unknown=unknown)


def test_a_webm_is_as_long_as_its_duration_says():
    assert audio_seconds(webm()) == 62  # 61,250 ms


def test_a_duration_of_4_bytes_and_another_timecode_scale():
    # 2,000.5 units of 10 ms: 20.005 s.
    assert audio_seconds(webm(duration=struct.pack(">f", 2_000.5), scale=10_000_000)) == 21


def test_a_live_recording_without_a_duration_lasts_to_its_last_block():
    # Unknown sizes (a browser's MediaRecorder); the last block starts at 59,980 ms and
    # lasts the track's default 20 ms: 60 s exactly.
    data = webm(
        duration=None,
        unknown=True,
        clusters=[(0, [0, 20]), (30_000, [0, 20]), (59_960, [0, 20])],
        default_duration=20_000_000,
    )

    assert audio_seconds(data) == 60


def test_a_block_group_lasts_its_block_duration():
    data = webm(duration=None, clusters=[(90_000, [0, 100])], group_duration=600)

    assert audio_seconds(data) == 91  # 90.1 s + 0.6 s


def test_a_duration_that_says_less_than_the_blocks_is_not_cheaper():
    data = webm(duration=struct.pack(">d", 1_000.0), clusters=[(0, [0]), (119_500, [0, 400])])

    assert audio_seconds(data) == 120


def opus_head(pre_skip: int) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, 2, pre_skip, 48_000, 0, 0)


def vorbis_headers(rate: int, short_block: int) -> bytes:
    """A Vorbis CodecPrivate: its three headers Xiph-laced, the identification one real
    (rate, block sizes), the comment and setup ones stand-ins."""
    exponent = short_block.bit_length() - 1
    identification = b"\x01vorbis" + struct.pack(
        "<IBIiiiBB", 0, 2, rate, 0, 0, 0, 0xB0 | exponent, 1
    )
    comment = b"\x03vorbis" + b"\0" * 300
    return (
        b"\x02"
        + bytes([len(identification), 255, len(comment) - 255])
        + identification
        + comment
        + b"\x05vorbis"
    )


@pytest.mark.parametrize(
    ("clusters", "laced", "frames"),
    [
        ([(0, [0] * 5_000)], 1, 5_000),  # every block at time 0
        ([(0, [0] * 100)] * 50, 1, 5_000),  # Clusters repeating one Timecode
        ([(0, [0] * 20)], 250, 5_000),  # 250 frames laced in each block
    ],
)
def test_blocks_that_claim_no_time_are_billed_as_the_frames_they_hold(clusters, laced, frames):
    data = webm(duration=struct.pack(">d", 1_000.0), clusters=clusters, laced=laced)

    assert audio_seconds(data) == math.ceil(frames * Fraction(1, 400)) == 13


def test_an_opus_floor_is_less_its_pre_skip_and_a_vorbis_one_its_shortest_blocks():
    opus = webm(duration=None, clusters=[(0, [0] * 4_400)], private=opus_head(48_000))
    # 12,001 packets of at least 128 samples at 48 kHz, the first playing nothing: 32 s.
    vorbis = webm(
        duration=None,
        clusters=[(0, [0] * 1_000)] * 12 + [(0, [0])],
        codec=b"A_VORBIS",
        private=vorbis_headers(48_000, 256),
    )

    assert audio_seconds(opus) == 10  # 11 s of frames less 1 s
    assert audio_seconds(vorbis) == 32


@pytest.mark.parametrize(
    ("codec", "private"),
    [
        (b"A_VORBIS", b"\x02\x1e"),  # headers that do not read
        (b"A_FLAC", b""),  # a codec not known here
        (b"A_AAC", CELP_8K),  # not AAC
    ],
)
def test_a_track_without_a_floor_is_billed_by_its_timecodes(codec, private):
    data = webm(duration=None, clusters=[(0, [0] * 5_000)], codec=codec, private=private)

    assert audio_seconds(data) == 1


def test_a_legitimate_webm_is_billed_no_more_than_it_plays():
    # 60 s of 2.5 ms Opus frames laced 8 to a 20 ms block, less a pre-skip of 6.5 ms.
    clusters = [(second * 1000, list(range(0, 1000, 20))) for second in range(60)]
    data = webm(
        duration=None,
        clusters=clusters,
        laced=8,
        private=opus_head(312),
        default_duration=20_000_000,
    )

    assert audio_seconds(data) == 60


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (EBML_HEADER, "no segment"),
        (webm(duration=struct.pack(">d", float("nan"))), "a NaN duration"),
        (webm(duration=struct.pack(">d", float("inf"))), "an infinite duration"),
        (webm(duration=struct.pack(">d", -5.0)), "a negative duration"),
        (webm(duration=b"\0\0\0"), "a duration of 3 bytes"),
        (webm(scale=0), "a timecode scale of zero"),
        (webm(duration=None, clusters=[]), "no duration and no block"),
        (webm()[:60], "truncated"),
        (EBML_HEADER + b"\x18\x53\x80\x67" + size(2**40), "a size past the end"),
        (EBML_HEADER + b"\x00" * 50, "NUL bytes"),
        (b"\x1a\x45\xdf\xa3" + b"\xff" * 20, "an EBML header of unknown size"),
    ],
)
def test_a_damaged_webm_is_refused_with_a_clear_400(data, why):
    error = refusal(data)

    assert "WebM (Matroska)" in error.message, why


# --- Any bytes: a length or the refusal ------------------------------------------------------

VALID = [
    m4a(),
    m4a(version=1, large=True),
    fragmented([[0] * 5, [960] * 4]),
    webm(),
    webm(duration=None, unknown=True, default_duration=20_000_000),
    m4a(entry=mp4a(AAC_LC_44K), tables=full(b"stsz", 0, 0, struct.pack(">II", 100, 2_637))),
    fragmented([[0] * 3, [960] * 2], entry=OPUS_ENTRY),
    webm(laced=3, private=opus_head(312)),
    webm(codec=b"A_VORBIS", private=vorbis_headers(44_100, 256)),
]


def _measured_or_refused(data: bytes) -> None:
    """Assert that `data` is measured (1 s to the longest billed) or refused with the 400."""
    refused: RelayError | None = None
    try:
        seconds = audio_seconds(data)
    except RelayError as error:
        refused = error
    if refused is None:
        assert 1 <= seconds <= MAX_RECORDING_SECONDS
    else:
        assert (refused.status_code, refused.code) == (400, "unsupported_audio_format")


@settings(max_examples=400, deadline=None)
@given(
    original=st.sampled_from(VALID),
    changes=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_a_mutated_or_truncated_file_is_measured_or_refused(original, changes, cut):
    data = bytearray(original)
    for position, value in changes:
        data[position % len(data)] = value
    _measured_or_refused(bytes(data))
    _measured_or_refused(bytes(data[: cut % (len(data) + 1)]))


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600))
def test_any_bytes_after_a_container_signature_are_measured_or_refused(data):
    for prefix in (b"\0\0\0\x18ftyp", b"\0\0\0\x08moov", b"\0\0\0\x01mdat", b"\x1a\x45\xdf\xa3"):
        _measured_or_refused(prefix + data)


@pytest.mark.parametrize("original", VALID)
def test_every_truncation_of_a_valid_file_is_measured_or_refused(original):
    for end in range(len(original)):
        _measured_or_refused(original[:end])


# --- Files a real encoder wrote ---------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg")
# Written into a pipe, as a live recording is: no going back for sizes or a duration.
PIPED = {
    "fragmented m4a": ["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov", "-f", "mp4"],
    "webm": ["-c:a", "libopus", "-f", "webm"],
    "mka": ["-c:a", "libvorbis", "-f", "matroska"],
}
ON_DISK = {"m4a": ["-c:a", "aac"], "webm": ["-c:a", "libopus"]}


def ffmpeg(seconds: float, options: list[str], output: str = "pipe:1") -> bytes:
    """A sine tone of `seconds` encoded by ffmpeg."""
    assert FFMPEG is not None
    tone = f"sine=frequency=440:duration={seconds}"
    command = [FFMPEG, "-v", "error", "-f", "lavfi", "-i", tone, *options, output]
    return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize("kind", list(PIPED))
def test_a_recording_ffmpeg_streamed_is_measured(kind):
    # 3.5 s of tone (an AAC encoder's priming frame makes it 3.52 s): 4 s either way.
    assert audio_seconds(ffmpeg(3.5, PIPED[kind])) == 4


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize(("kind", "seconds", "billed"), [("m4a", 3.5, 4), ("webm", 61.25, 62)])
def test_a_file_ffmpeg_wrote_is_measured(tmp_path, kind, seconds, billed):
    path = tmp_path / f"tone.{kind}"
    ffmpeg(seconds, ["-y", *ON_DISK[kind]], str(path))

    assert audio_seconds(path.read_bytes()) == billed


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize("kind", ["m4a", "mov"])
def test_a_real_aac_file_whose_samples_say_they_last_nothing_is_billed_its_floor(tmp_path, kind):
    # 61.25 s of AAC-LC at 44.1 kHz: 2,640 frames or so, a floor of 28.7 s.
    path = tmp_path / f"tone.{kind}"
    ffmpeg(61.25, ["-y", "-c:a", "aac"], str(path))
    data = bytearray(path.read_bytes())
    stts = data.index(b"stts") + 8
    (count,) = struct.unpack_from(">I", data, stts)
    frames = 0
    for entry in range(count):  # every sample lasts 0
        frames += struct.unpack_from(">I", data, stts + 4 + 8 * entry)[0]
        struct.pack_into(">I", data, stts + 8 + 8 * entry, 0)
    for header in (b"mvhd", b"mdhd", b"tkhd"):  # and so does the movie
        at = data.index(header) + 4
        struct.pack_into(">I", data, at + 16 if header != b"tkhd" else at + 20, 0)

    assert audio_seconds(bytes(data)) == math.ceil(Fraction(frames * 480, 44_100)) == 29
