"""The byte format of what the queue stores, in one place: envelopes, handles, dead-letter records,
the ids of malformed entries. The Lua scripts write and read the same bytes (rediswq/lua/prelude.lua);
which key holds what is rediswq/_keys.py's.

- envelope: msgpack ``[id, attempts, payload]`` (a pending or delayed item), packed as Redis's
  cmsgpack packs it, so bytes built here and bytes built in Lua are the same;
- handle: the envelope an item was leased from (``[id, attempts]`` when its payload waits in the
  payloads hash), then msgpack token, worker, leased_at_ms, lease_ms;
- dead-letter record: msgpack ``[id, attempts, payload, error, dead_at_ms]``;
- a malformed entry, quarantined: ``malformed:<sha1 of its bytes>`` -> a record whose payload is
  the raw bytes and whose error is ``malformed entry in KEY: why``.

Readers raise ValueError with the reason when bytes are not what they should be: callers show
malformed entries, they do not fail on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

MALFORMED = "malformed:"

# Raw (old-style) strings: Redis's cmsgpack predates msgpack's bin type.
_pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=False).pack


def pack_array(values: Sequence[Any]) -> bytes:
    """A msgpack array as cmsgpack.unpack reads it (bytes as raw strings)."""
    return _pack(list(values))


def _same_as_lua(n: int) -> bool:
    """msgpack-python's old-spec raw header equals cmsgpack's str header except for 32..255 bytes."""
    return n < 32 or n > 255


def _raw(data: bytes) -> bytes:
    """`data` as cmsgpack packs a Lua string: fixstr, str8 (0xd9), str16 (0xda) or str32 (0xdb)."""
    n = len(data)
    if n < 32:
        return bytes((0xA0 | n,)) + data
    if n <= 0xFF:
        return bytes((0xD9, n)) + data
    if n <= 0xFFFF:
        return b"\xda" + n.to_bytes(2, "big") + data
    return b"\xdb" + n.to_bytes(4, "big") + data


def envelope(item_id: int | str, payload: bytes) -> bytes:
    """The pending envelope of a new item: the same bytes as Lua's cmsgpack.pack({id, 0, payload}).

    msgpack-python's old spec has no str8, which cmsgpack uses for 32..255 bytes, hence `_raw`; the
    common case (an assigned id, a payload of another length) is msgpack's packer alone, in C.
    """
    if isinstance(item_id, int) and _same_as_lua(len(payload)):
        return _pack((item_id, 0, payload))
    packed_id = _pack(item_id) if isinstance(item_id, int) else _raw(item_id.encode())
    return b"\x93" + packed_id + b"\x00" + _raw(payload)


def _unpack(raw: bytes, arity: int) -> list[Any]:
    """A msgpack array of `arity` values; ValueError with the reason when `raw` is not one."""
    try:
        value = msgpack.unpackb(raw, raw=True)
    except (ValueError, msgpack.UnpackException) as e:
        raise ValueError(f"not msgpack ({e})") from e
    if not isinstance(value, list) or len(value) != arity:
        raise ValueError(f"not a msgpack array of {arity}")
    return value


def read_envelope(raw: bytes) -> tuple[int | bytes, int, bytes]:
    """(id, attempts, payload) of a pending envelope; ValueError when `raw` is not one."""
    item_id, attempts, payload = _unpack(raw, 3)
    if not (isinstance(item_id, int | bytes) and isinstance(attempts, int) and isinstance(payload, bytes)):
        raise ValueError("not [id, attempts, payload]")
    return item_id, attempts, payload


def read_dead_record(raw: bytes) -> tuple[int | bytes, int, bytes, bytes, int]:
    """(id, attempts, payload, error, dead_at_ms) of a dead letter; ValueError when `raw` is not one."""
    item_id, attempts, payload, error, dead_at_ms = _unpack(raw, 5)
    if not (
        isinstance(item_id, int | bytes)
        and isinstance(attempts, int)
        and isinstance(payload, bytes)
        and isinstance(error, bytes)
        and isinstance(dead_at_ms, int)
    ):
        raise ValueError("not [id, attempts, payload, error, dead_at_ms]")
    return item_id, attempts, payload, error, dead_at_ms


def read_handle(handle: bytes) -> tuple[list[Any], int, bytes, int]:
    """(envelope, token, worker, leased_at_ms): a handle is the item's envelope and the values after it.

    The envelope is the one the item was leased from, [id, attempts before this lease, payload], or
    [id, attempts] when the payload is kept in the payloads hash (see rediswq/_keys.py). Then come
    token, worker, leased_at_ms and lease_ms (handles made before lease_ms was added lack it).
    Raises ValueError when `handle` is not one.
    """
    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max(len(handle), 1024))
    unpacker.feed(handle)
    try:
        envelope, token, worker, leased_at_ms, *_ = unpacker
    except (ValueError, msgpack.UnpackException) as e:
        raise ValueError(f"not a lease handle: {e}") from e
    if not (
        isinstance(envelope, list)
        and len(envelope) in (2, 3)
        and isinstance(envelope[0], int | bytes)
        and isinstance(envelope[1], int)
        and isinstance(token, int)
        and isinstance(worker, bytes)
        and isinstance(leased_at_ms, int)
    ):
        raise ValueError("not a lease handle")
    return envelope, token, worker, leased_at_ms


def new_leases(handles: Sequence[bytes], kept: Mapping[int, bytes]) -> list[tuple[str, int, bytes, bytes]]:
    """(id, attempt, payload, handle) of each lease lease.lua just made (no checks: it built them).

    One unpacker reads them all: each handle is an envelope and the four values lease.lua packed after
    it, skipped. `kept`: the payloads waiting in the payloads hash, by position (their handles' envelopes
    are [id, attempts]).
    """
    data = handles[0] if len(handles) == 1 else b"".join(handles)
    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max(len(data), 1024))
    unpacker.feed(data)
    unpack, skip = unpacker.unpack, unpacker.skip
    leases = []
    for position, handle in enumerate(handles):
        if position:
            skip(), skip(), skip(), skip()  # the last handle's token, worker, leased_at_ms, lease_ms
        item_id, attempts, *payload = unpack()
        text = str(item_id) if type(item_id) is int else item_id.decode()
        leases.append((text, attempts + 1, payload[0] if payload else kept[position], handle))
    return leases


def malformed_id(raw: bytes) -> str:
    """The id a malformed entry gets as a dead letter: the same as the prelude's redis.sha1hex."""
    return MALFORMED + hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def malformed_error(key: str, why: str) -> str:
    """The error of a quarantined entry, as the scripts write it."""
    return f"malformed entry in {key}: {why}"


def id_text(value: Any) -> str:
    """An id (or another value) as Redis returned it, as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
