"""Uploaded songs: checked (size, content, duration) and stored under a server-made id.

The client's file name is kept only as text to show; it never becomes a path. A song is stored as
DATA/songs/ID/song, where ID is made here; what a file is comes from its first bytes, not from its
name or the content type the browser sent, and then it must decode (dancegen.audio) to at most
the duration limit.
"""

from __future__ import annotations

import math
import re
import shutil
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .jobs import is_id, new_id

STORED_NAME = "song"  # every upload's file name on disk; the outputs are named after it (song.bvh ...)


def sniff(head: bytes) -> str | None:
    """The audio container that the first bytes of a file announce, or None for anything else."""
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3":
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and head[1] != 0xFF:
        return "aac" if (head[1] & 0x06) == 0 else "mp3"  # frame sync: MPEG layer bits 00 are ADTS AAC
    return None


def display_name(filename: str | None) -> str:
    """A client's file name as harmless text to show: its last path part, printable, at most 80 characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = name.strip(" .")[:80]
    return name or "song"


class UploadRejected(Exception):
    """An upload that is not a song we take; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Song:
    id: str
    name: str  # for display only
    path: Path
    seconds: float
    kind: str


class Songs:
    """The uploaded songs, by id; the oldest go beyond `keep`."""

    def __init__(self, root: Path, *, max_bytes: int, max_seconds: float, keep: int = 50):
        self.root, self.max_bytes, self.max_seconds, self.keep = root, max_bytes, max_seconds, keep
        self.songs: dict[str, Song] = {}
        self.lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(2)  # at most two uploads decode at once

    def new_slot(self) -> tuple[str, Path]:
        """A fresh id and the path its upload is written to (the folder is created)."""
        song_id = new_id()
        folder = self.root / song_id
        folder.mkdir(parents=True)
        return song_id, folder / STORED_NAME

    def check_and_add(self, song_id: str, path: Path, filename: str | None) -> Song:
        """Check the upload written to `path` (by `new_slot`); keep it, or remove it and raise UploadRejected."""
        try:
            song = self._check(song_id, path, display_name(filename))
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        with self.lock:
            self.songs[song.id] = song
            for old in list(self.songs.values())[: max(0, len(self.songs) - self.keep)]:
                del self.songs[old.id]
                shutil.rmtree(old.path.parent, ignore_errors=True)
        return song

    def _check(self, song_id: str, path: Path, name: str) -> Song:
        from .. import audio

        size = path.stat().st_size
        if size == 0:
            raise UploadRejected(400, "the file is empty")
        if size > self.max_bytes:
            raise UploadRejected(413, f"the file is over the {self.max_bytes / 2**20:g} MB limit")
        with open(path, "rb") as f:
            kind = sniff(f.read(16))
        if kind is None:
            raise UploadRejected(415, "not an audio file (WAV, MP3, OGG, FLAC, M4A, AIFF or WebM)")
        with self.decoding:
            try:
                header = audio.probe(path).duration
                if math.isfinite(header) and header > self.max_seconds:
                    raise UploadRejected(422, f"the song is {header / 60:.1f} minutes long; the limit is "
                                              f"{self.max_seconds / 60:g} minutes")
                # Decode it all (at a low rate): a damaged, truncated, silent or lying file stops here.
                y = audio.load(path, 8000, max_duration=self.max_seconds)
            except UserError as e:
                raise UploadRejected(422, f"{kind} file that cannot be used: {e.problem}") from None
        seconds = len(y) / 8000
        if seconds < 1.0:
            raise UploadRejected(422, f"the song is only {seconds:.2f} s long (at least 1 s is needed)")
        return Song(song_id, name, path, round(seconds, 2), kind)

    def get(self, song_id: str) -> Song | None:
        return self.songs.get(song_id) if is_id(song_id) else None
