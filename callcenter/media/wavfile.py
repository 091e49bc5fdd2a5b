"""
Prompts from WAV files and recordings to WAV files, at 8 kHz mono.

Prompts are read once, converted to 160-byte G.711 frames of the call's
codec and cached, so a play costs no conversion.  We read the RIFF chunks
ourselves (the stdlib C{wave} module knows only linear PCM, and prompts
often come as G.711 WAVs, format tags 6 and 7).  Nothing is resampled:
prompts are produced at 8 kHz at install time, and a file in another
shape is refused with a one-line reason.
"""

import os
import struct

from callcenter.media import g711

SAMPLE_RATE = 8000
FRAME_BYTES = 160

# Format tags (RFC 2361 appendix A).
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_ENCODING_FORMATS = {"PCMU": WAVE_FORMAT_MULAW, "PCMA": WAVE_FORMAT_ALAW}
# (format tag of the file, encoding wanted) -> conversion of the whole data.
_CONVERSIONS = {
    (WAVE_FORMAT_PCM, "PCMU"): g711.linear_to_ulaw,
    (WAVE_FORMAT_PCM, "PCMA"): g711.linear_to_alaw,
    (WAVE_FORMAT_MULAW, "PCMU"): bytes,
    (WAVE_FORMAT_MULAW, "PCMA"): g711.ulaw_to_alaw,
    (WAVE_FORMAT_ALAW, "PCMU"): g711.alaw_to_ulaw,
    (WAVE_FORMAT_ALAW, "PCMA"): bytes,
}
_BITS = {WAVE_FORMAT_PCM: 16, WAVE_FORMAT_MULAW: 8, WAVE_FORMAT_ALAW: 8}

_CHUNK = struct.Struct("<4sI")
_FORMAT = struct.Struct("<HHIIHH")


class PromptError(ValueError):
    """A prompt file we cannot play; the message is one line."""


def _read_wav(path):
    """(format tag, data bytes) of a WAV file that passes our checks."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise PromptError(f"{path}: {error.strerror}") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptError(f"{path}: not a RIFF WAVE file")
    offset = 12
    fmt = None
    while offset + _CHUNK.size <= len(data):
        chunk_id, size = _CHUNK.unpack_from(data, offset)
        start = offset + _CHUNK.size
        if chunk_id == b"fmt ":
            if size < _FORMAT.size:
                raise PromptError(f"{path}: fmt chunk of {size} bytes is too short")
            fmt = _FORMAT.unpack_from(data, start)
            tag = fmt[0]
            if tag == WAVE_FORMAT_EXTENSIBLE and size >= 40:
                # The subformat GUID begins with the real format tag.
                (tag,) = struct.unpack_from("<H", data, start + 24)
            fmt = (tag,) + fmt[1:]
        elif chunk_id == b"data":
            if fmt is None:
                raise PromptError(f"{path}: data chunk before the fmt chunk")
            # A recording cut off before its header was last updated says
            # less than the file holds, or (a streaming writer) 0xFFFFFFFF:
            # take what is there, never beyond the file.
            return _check_format(path, fmt), data[start : min(start + size, len(data))]
        # Chunks are padded to an even length.
        offset = start + size + size % 2
    raise PromptError(f"{path}: no data chunk")


def _check_format(path, fmt):
    tag, channels, rate, _, _, bits = fmt
    if tag not in _BITS:
        raise PromptError(f"{path}: format tag {tag} is not PCM, mu-law or A-law")
    if channels != 1:
        raise PromptError(f"{path}: {channels} channels, prompts must be mono")
    if rate != SAMPLE_RATE:
        raise PromptError(f"{path}: {rate} Hz, prompts must be 8000 Hz (we do not resample)")
    if bits != _BITS[tag]:
        raise PromptError(f"{path}: {bits}-bit samples, expected {_BITS[tag]}-bit for format tag {tag}")
    return tag


_cache = {}


def load_prompt(path, encoding):
    """
    The frames of the WAV file at C{path} in C{encoding} ('PCMU' or 'PCMA'):
    160 bytes each (20 ms), the last padded with silence.  Cached by path,
    modification time and encoding, so a prompt replaced on disk is read
    anew.
    """
    encoding = encoding.upper()
    if encoding not in _ENCODING_FORMATS:
        raise ValueError(f"encoding {encoding!r} is not PCMU or PCMA")
    try:
        status = os.stat(path)
    except OSError as error:
        raise PromptError(f"{path}: {error.strerror}") from None
    key = (os.path.abspath(path), status.st_mtime_ns, status.st_size, encoding)
    frames = _cache.get(key)
    if frames is None:
        tag, data = _read_wav(path)
        if tag == WAVE_FORMAT_PCM and len(data) % 2:
            data = data[:-1]
        payload = _CONVERSIONS[tag, encoding](data)
        payload += bytes((g711.SILENCE[encoding],)) * (-len(payload) % FRAME_BYTES)
        frames = tuple(
            payload[offset : offset + FRAME_BYTES] for offset in range(0, len(payload), FRAME_BYTES)
        )
        # A changed file leaves its old entries behind; drop them.
        for stale in [old for old in _cache if old[0] == key[0] and old[3] == encoding]:
            del _cache[stale]
        _cache[key] = frames
    return list(frames)


# A G.711 WAV header: RIFF, a fmt chunk with cbSize (non-PCM formats
# carry it), a fact chunk (required for non-PCM formats) and the data
# chunk's header; 58 bytes.
_HEADER = struct.Struct("<4sI4s4sIHHIIHHH4sII4sI")
_FMT_SIZE = 18
_FACT_SIZE = 4


def _header(format_tag, data_size):
    return _HEADER.pack(
        b"RIFF",
        _HEADER.size - 8 + data_size + data_size % 2,
        b"WAVE",
        b"fmt ",
        _FMT_SIZE,
        format_tag,
        1,
        SAMPLE_RATE,
        SAMPLE_RATE,
        1,
        8,
        0,
        b"fact",
        _FACT_SIZE,
        data_size,
        b"data",
        data_size,
    )


class WavRecorder:
    """
    G.711 payloads written as they come to an 8 kHz mono WAV file (format
    tag 7 for PCMU, 6 for PCMA).

    The header's sizes are rewritten, and the file flushed to the operating
    system, every C{update_seconds} of audio (5 s by default) and at
    L{close}.  A process killed mid-call therefore leaves a file that plays
    up to the last update; the audio after it is in the file but outside
    the declared data size (our L{load_prompt} and most tools read only the
    declared size).  The writes are plain buffered file writes in the
    reactor's thread: 8 kB/s per call, far below what a disk takes.
    """

    def __init__(self, path, encoding, update_seconds=5.0):
        encoding = encoding.upper()
        if encoding not in _ENCODING_FORMATS:
            raise ValueError(f"encoding {encoding!r} is not PCMU or PCMA")
        self.path = path
        self.encoding = encoding
        self._format_tag = _ENCODING_FORMATS[encoding]
        self._update_bytes = int(update_seconds * SAMPLE_RATE)
        self._file = open(path, "wb")
        try:
            self._file.write(_header(self._format_tag, 0))
            self._file.flush()
        except OSError:
            self._file.close()
            raise
        self.data_size = 0
        self._since_update = 0

    def write(self, payload):
        if self._file is None:
            raise ValueError(f"{self.path}: recorder is closed")
        self._file.write(payload)
        self.data_size += len(payload)
        self._since_update += len(payload)
        if self._since_update >= self._update_bytes:
            self._update_header()

    def _update_header(self):
        file = self._file
        end = file.tell()
        file.seek(0)
        file.write(_header(self._format_tag, self.data_size))
        file.seek(end)
        file.flush()
        self._since_update = 0

    def drop_tail(self, nbytes):
        """Take the last C{nbytes} of audio off the end (a key's tone that ended the recording)."""
        nbytes = min(nbytes, self.data_size)
        if self._file is None or nbytes <= 0:
            return
        self._file.flush()
        self.data_size -= nbytes
        self._file.truncate(self._file.tell() - nbytes)
        self._file.seek(0, os.SEEK_END)

    def close(self, sync=False):
        """
        Write the final sizes and close the file; with C{sync}, only after
        the operating system has put it on disk (C{fsync}), which blocks:
        call it so only off the reactor thread.
        """
        if self._file is None:
            return
        try:
            if self.data_size % 2:
                # RIFF chunks are padded to an even length (the pad is not data).
                self._file.write(b"\0")
            self._update_header()
            if sync:
                os.fsync(self._file.fileno())
        finally:
            # Closed even when the disk failed us: the descriptor is not
            # leaked, and the error still reaches the caller.
            self._file.close()
            self._file = None
