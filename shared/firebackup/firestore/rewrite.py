"""Stored Document bytes -> Write bytes aimed at the target database (restore's hot path).

A backup stores each document as the exact google.firestore.v1.Document bytes the server
sent: the name first, the fields map, then the two output-only timestamps. Restoring one
is, per document, a few slices: the name is replaced by the target's and the timestamps
cut off, with no protobuf parse in Python (DocumentRewriter.frame_many); one C-level parse
per batch then checks that every Document built that way is well formed. The Write around
it is concatenated bytes (firestore.wire).

A document goes through protobuf (DocumentRewriter.rewrite) only when it must: in merge mode
(its top-level field names make the update mask), when its bytes contain the source
database's document prefix beyond the name (a reference_value that may need remapping to
the target), or when its bytes are not shaped as Firestore serves documents.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from firebackup.errors import CorruptData, UsageError
from firebackup.firestore import protos
from firebackup.firestore.wire import N_VARINTS, VARINTS, encode_varint, len_field, varint

MODES = ("overwrite", "skip", "merge")

_PRECONDITION_MISSING = b"\x22\x02\x08\x00"  # Write.current_document = Precondition{exists: false}


def _timestamp_field_pattern() -> bytes:
    """Regex for a Timestamp field's length byte and contents, the length checked against them.

    Timestamp = [0x08 varint seconds] [0x10 varint nanos], zero values omitted; seconds take
    1-10 bytes, nanos (0..999,999,999) 1-5. One alternative per (seconds, nanos) width, so
    the length byte must equal the bytes that follow it (at most 17).
    """
    def varint(width: int) -> bytes:
        return (rb"[\x80-\xff]{%d}" % (width - 1) if width > 1 else b"") + rb"[\x00-\x7f]"

    by_length: dict[int, list[bytes]] = {}
    for sw in range(11):
        for nw in range(6):
            body = (rb"\x08" + varint(sw) if sw else b"") + (rb"\x10" + varint(nw) if nw else b"")
            by_length.setdefault((sw and sw + 1) + (nw and nw + 1), []).append(body)
    return b"(?:" + b"|".join(
        re.escape(bytes([n])) + b"(?:" + b"|".join(alts) + b")" for n, alts in sorted(by_length.items())
    ) + b")"


# The end of a Document as Firestore serializes it: create_time (field 3) then update_time
# (field 4), the last two fields. Searched for in the last 38 bytes; the leftmost
# match is the real one: the timestamps' own bytes cannot be read as a longer such tail
# (tests/unit/firestore/test_rewrite_fast_path.py holds this path to the protobuf one).
_TS = _timestamp_field_pattern()
_TAIL = re.compile(rb"\x1a" + _TS + rb"\x22" + _TS + rb"\Z")


# Our own subset of the Firestore messages: the client library's types cost ~0.35 s to import.
_Skeleton: Any = protos.DocumentSkeleton  # name and timestamps only: the fields map stays unknown bytes
_DocumentPb: Any = protos.Document
_WritesSkeletonPb: Any = protos.WritesSkeleton


_SIMPLE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote_field_path(name: str) -> str:
    """One field name as a Firestore field path segment: backtick-quoted unless a simple identifier."""
    if _SIMPLE_FIELD.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def database_path(project: str, database: str = "(default)") -> str:
    return f"projects/{project}/databases/{database or '(default)'}"


def relative_name(name: str) -> str:
    """The document path after ".../documents/" (project and database ids contain no '/')."""
    i = name.find("/documents/")
    if not name.startswith("projects/") or i < 0:
        raise CorruptData(f"not a Firestore document name: {name[:200]!r}")
    return name[i + 11 :]


def _remap_value(v: Any, src: str, dst: str, n_src: int) -> None:
    kind = v.WhichOneof("value_type")
    if kind == "reference_value":
        ref = v.reference_value
        if ref.startswith(src):
            v.reference_value = dst + ref[n_src:]
    elif kind == "map_value":
        for x in v.map_value.fields.values():
            _remap_value(x, src, dst, n_src)
    elif kind == "array_value":
        for x in v.array_value.values:
            _remap_value(x, src, dst, n_src)


# -- one document -> one Write -------------------------------------------------------------


class DocumentRewriter:
    """Turns stored Document bytes into Write bytes aimed at the target database.

    source / target are database paths ("projects/P/databases/D"). Names are rewritten to
    the target; reference values into the source database are remapped to the target
    unless keep_references. mode: overwrite (plain update), skip (precondition
    exists=false), merge (update mask = the document's top-level fields). collections, if
    given, keeps only documents under those root collections (frame_many counts the rest).
    """

    def __init__(
        self,
        source: str,
        target: str,
        *,
        mode: str = "overwrite",
        keep_references: bool = False,
        collections: Iterable[str] | None = None,
    ):
        if mode not in MODES:
            raise UsageError(f"unknown restore mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self.source_docs = source.rstrip("/") + "/documents/"
        self.target_docs = target.rstrip("/") + "/documents/"
        self.remap = not keep_references and self.source_docs != self.target_docs
        self._src_bytes = self.source_docs.encode()
        self._tgt_bytes = self.target_docs.encode()
        # Project and database ids are ASCII, so string and byte offsets agree.
        self._n_src = len(self._src_bytes)
        self._collection_bytes = frozenset(c.encode() for c in collections) if collections else None
        self._merge = mode == "merge"
        self._suffix = _PRECONDITION_MISSING if mode == "skip" else b""

    def rewrite(self, raw: bytes) -> tuple[str, bytes]:
        """(path relative to documents/, Write bytes) for one stored Document."""
        # The name occupies bytes 2..(2 or 3)+len(name); a hit from offset 4 on is elsewhere.
        full = self._merge or (self.remap and raw.find(self._src_bytes, 4) >= 0)
        try:
            doc = (_DocumentPb if full else _Skeleton).FromString(raw)
        except Exception as e:  # protobuf's DecodeError; keep vendor types inside
            raise CorruptData(f"a stored document does not parse as google.firestore.v1.Document ({e})") from None
        name = doc.name
        rel = name[self._n_src :] if name.startswith(self.source_docs) else relative_name(name)
        doc.name = self.target_docs + rel
        doc.ClearField("create_time")  # output-only
        doc.ClearField("update_time")
        if full and self.remap:
            src, dst, n = self.source_docs, self.target_docs, len(self.source_docs)
            for v in doc.fields.values():
                _remap_value(v, src, dst, n)
        write = len_field(b"\x0a", doc.SerializeToString()) + self._suffix
        if self._merge:
            mask = b"".join(len_field(b"\x0a", quote_field_path(k).encode()) for k in doc.fields)
            # An empty mask is still a mask: it creates a missing document and leaves an existing one as is.
            write += len_field(b"\x1a", mask)
        return rel, write

    def frame_many(self, raws: Iterable[bytes]) -> tuple[list[bytes], list[tuple[str, str]], int]:
        """rewrite() for many documents, each Write framed as a BatchWriteRequest.writes entry.

        Returns (framed writes, in order; (path, reason) per document that cannot be
        rewritten; how many documents the collection filter left out).

        Documents as Firestore serves them (name first, the two output-only timestamps last,
        nothing to merge or remap) take a byte-level path with no protobuf parse: the name is
        replaced and the timestamps cut off by slicing, which is byte-for-byte what rewrite()
        makes of them. One C-level parse of the whole result (WritesSkeleton) then checks
        that every Document built that way is well formed; if one is not (bytes Firestore
        would not have served), the batch is redone one document at a time, and such a
        document through rewrite(). Everything else goes through rewrite().
        """
        raws = raws if isinstance(raws, list) else list(raws)
        out, failures, filtered, fast = self._frame(raws, self._merge)
        if fast and not _well_formed(out):
            out, failures, filtered = [], [], 0
            for raw in raws:
                one = self._frame([raw], False)
                if one[3] and not _well_formed(one[0]):
                    one = self._frame([raw], True)
                out += one[0]
                failures += one[1]
                filtered += one[2]
        return out, failures, filtered

    def _frame(self, raws: list[bytes], slow: bool) -> tuple[list[bytes], list[tuple[str, str]], int, int]:
        """frame_many() without the final check; also returns how many writes took the byte-level path."""
        out: list[bytes] = []
        append = out.append
        failures: list[tuple[str, str]] = []
        filtered = fast = 0
        colls = self._collection_bytes
        src, n_src, tgt = self._src_bytes, self._n_src, self._tgt_bytes
        delta = len(tgt) - n_src
        remap, suffix = self.remap, self._suffix
        n_suffix = len(suffix)
        search = _TAIL.search
        varints, n_varints = VARINTS, N_VARINTS
        for raw in raws:
            q = -1  # where the timestamps start; >= 0 once the document fits the byte-level path
            if not slow:
                try:
                    if raw[0] != 0x0A:
                        nl = -1
                    elif raw[1] < 0x80:
                        s, nl = 2, raw[1]
                    elif raw[2] < 0x80:  # names are at most 6 KiB: a 2-byte length at most
                        s, nl = 3, (raw[1] & 0x7F) | (raw[2] << 7)
                    else:
                        nl = -1
                except IndexError:
                    nl = -1
                if nl > n_src and raw.startswith(src, s):
                    e = s + nl
                    if not (remap and raw.find(src, e) >= 0):  # a reference to remap: rewrite() does it
                        lo = len(raw) - 38  # the longest tail: two 17-byte Timestamps and their headers
                        m = search(raw, lo if lo > e else e)
                        if m is not None:
                            q = m.start()
            if q < 0:
                try:
                    rel, write = self.rewrite(raw)
                except CorruptData as exc:
                    failures.append(("(unreadable document)", str(exc)))
                    continue
                if colls is not None and rel.split("/", 1)[0].encode() not in colls:
                    filtered += 1
                    continue
                n = len(write)
                append(b"\x12" + (varints[n] if n < n_varints else encode_varint(n)) + write)
                continue
            a = s + n_src
            if colls is not None:
                j = raw.find(b"/", a, e)
                if raw[a : j if j >= 0 else e] not in colls:
                    filtered += 1
                    continue
            nn = nl + delta
            vn = varints[nn] if nn < n_varints else encode_varint(nn)
            bl = 1 + len(vn) + nn + q - e  # Document = 0x0a len name, then the fields exactly as stored
            vb = varints[bl] if bl < n_varints else encode_varint(bl)
            wl = 1 + len(vb) + bl + n_suffix
            append(b"".join((b"\x12", varints[wl] if wl < n_varints else encode_varint(wl), b"\x0a", vb,
                             b"\x0a", vn, tgt, raw[a:q], suffix)))
            fast += 1
        return out, failures, filtered, fast


def _well_formed(framed: list[bytes]) -> bool:
    """True if every framed write parses down to its Document's name (UTF-8) and fields (C-level, one call)."""
    try:
        _WritesSkeletonPb.FromString(b"".join(framed))
    except Exception:  # protobuf's DecodeError
        return False
    return True
