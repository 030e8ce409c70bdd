"""The key schema: every Redis key a queue owns, in one place.

All keys of queue NAME share the prefix ``rediswq:{NAME}:`` (the braces are a Redis Cluster hash tag,
so every key of a queue lives in one slot and one script may touch them all), except the *inbox*:

========================  ======  ==============================================================
key                       type    meaning
========================  ======  ==============================================================
``NAME``                  list    the inbox: raw payloads pushed by hand (``redis-cli rpush NAME x``),
                                  as the Kubernetes docs example fills its queue; a lease takes them
                                  into the queue atomically. Same slot as the rest: its hash is NAME.
``rediswq:{NAME}:pending``  list  items ready to lease, each a msgpack envelope ``[id, attempts, payload]``
                                  (id: int when the queue assigned it, str when the caller did)
``rediswq:{NAME}:leased``   zset  one member per live lease, its *handle* (below); score: deadline in ms;
                                  plus one sentinel member, ``LEASED_SENTINEL``, score +inf (below)
``rediswq:{NAME}:payloads`` hash  id -> payload of each leased item whose envelope is over
                                  ``EMBED_LIMIT`` bytes (smaller payloads travel in the handle)
``rediswq:{NAME}:delayed``  zset  envelopes waiting out a retry backoff; score: when due, in ms
``rediswq:{NAME}:dead``     hash  id -> msgpack ``[id, attempts, payload, error, dead_at_ms]``; an
                                  entry that did not decode is kept here as ``malformed:<sha1>`` ->
                                  ``[that id, 0, its raw bytes, "malformed entry in KEY: why", ms]``
``rediswq:{NAME}:ids``      set   caller-given ids that are live (pending, delayed or leased)
``rediswq:{NAME}:checkpoints`` hash  input stream name -> how far a producer got (an opaque value
                                  written by `put_many(checkpoint=...)` in the same script call as
                                  each batch); cleared by `Queue.reopen` and `Queue.purge`
``rediswq:{NAME}:meta``     hash  counters ``enqueued completed failed retried expired dead_lettered
                                  released dropped quarantined``, the id sequence ``seq``, the lease token
                                  sequence ``token`` (one a lease call), and ``closed`` (1 once closed)
========================  ======  ==============================================================

A *handle* names one lease and nothing else: the pending envelope the item was leased from, as it
was (``[id, attempts before this lease, payload]``), followed by four more msgpack values: the
``token`` of the lease call (one per call, unique per queue; with the item's id, which no other item
taken in that call has, it names the lease), the ``worker``, ``leased_at_ms`` and ``lease_ms`` (a
lease whose score is still ``leased_at_ms + lease_ms`` was never renewed: see lease.lua on unseen
expiries). A copy of an envelope planted in pending would make a second handle of the same bytes:
lease.lua sees that (ZADD adds fewer members than it was given) and puts the copy back. So a lease
copies the envelope's bytes instead of decoding it, and completing a lease is one ZREM. An envelope
over ``EMBED_LIMIT`` bytes leaves its payload in ``payloads`` and goes into the handle as ``[id,
attempts]``: a worker sends its handles back to complete or extend them, so a large payload must not
ride along.

The sentinel is written by the first lease of several items at once and stays until `Queue.purge`.
Being longer than 64 bytes, it makes Redis store ``leased`` as a skiplist (and keep it so: the key
never empties), instead of the listpack it uses for small keys, whose every ZADD and ZREM scans the
whole key (bench/drain_batched.py, batches of 100: 4.4 us of Redis time per item with it, 4.7 us
without). Single leases skip it: a small listpack serves them well. Every reader ignores it: counts
subtract the member, the wait hint skips +inf, reclaim (scores up to now) never reaches it,
`Queue.holders` skips it. (``payloads`` needs none: what it holds is over 64 bytes, so it is a
hashtable anyway.)

Every script checks before it writes and quarantines what does not decode: the conventions are in
``rediswq/lua/README.md``. A queue exists once ``meta`` does (or its inbox holds items); ``meta`` gone
while other keys hold data means the queue is damaged (lease.lua's status 4).

Sharded queues (``Queue(..., shards=S)``, ``rediswq enqueue --shards S``): the queue is S queues of
the kind above, its *shards*, each under a hash tag of its own, so each script still runs on one slot
and the shards can sit on different masters of a cluster. Shard 0 is the queue's own keys, exactly as
above (inbox ``NAME``); its meta hash records the shard count in the field ``shards`` (absent: one
shard, which is every queue made without ``shards``: key layout and behaviour unchanged). Shard i >= 1
has the tag ``NAME~sI.K`` (keys ``rediswq:{NAME~sI.K}:pending`` and so on; its inbox is
``rediswq:{NAME~sI.K}:inbox``, which nothing fills by hand). K is the smallest integer >= 0 that puts
the tag's slot (CRC16, redis-py's ``key_slot``) in the middle half of slice ``(j + i) mod S`` of S equal
slices of the 16384 slots, j being the slice shard 0's slot falls in: so the S shards take one slice
each, and masters that own equal contiguous slot ranges (what ``redis-cli --cluster create`` makes)
hold equal numbers of shards (12 shards on 3 masters: 4 each). Slots are where the shards go: after a
reshard a shard lives wherever its slot went, and a rebalance that moves slots moves shards with them;
nothing in rediswq records which master holds what.

A shard's tag cannot be taken for a queue's name: a meta key ``rediswq:{NAME~sI.K}:meta`` is a shard
only when the queue ``NAME``'s meta says it has more than I shards and I, K are those its name and
count give (`shard_of`); else it is a queue of that name (``~`` is allowed in names). Every shard's meta
is made when the queue is (a count of 0), before shard 0 records the count: a shard whose meta is gone
is a vanished shard, an error as a vanished queue is.

Times are milliseconds on Redis's clock (``TIME``). A pending item is its envelope alone, about 9 bytes
more than the bare payload, so a long queue costs little more than a plain list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from redis.crc import key_slot

from rediswq.errors import InvalidArgument

PREFIX = "rediswq"
#: Shard 0's meta field recording a sharded queue's shard count.
SHARDS_FIELD = "shards"
#: The most shards a queue may have (each worker and producer keeps a connection per shard).
MAX_SHARDS = 1024
SLOTS = 16384
_SHARD_TAG = re.compile(r"(.+)~s([1-9][0-9]*)\.(0|[1-9][0-9]*)")

#: The leased zset's permanent member (score +inf); the same string in lease.lua and stats.lua.
LEASED_SENTINEL = b"rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease"
#: An envelope longer than this leaves its payload in the payloads hash while leased; lease.lua too.
EMBED_LIMIT = 256


@dataclass(frozen=True)
class Keys:
    """The keys of one queue, in the order the scripts take them (see each script's header)."""

    inbox: str
    pending: str
    leased: str
    payloads: str
    delayed: str
    dead: str
    ids: str
    meta: str
    checkpoints: str
    shard: int = 0  # which shard of the queue these keys are (0: the queue's own)
    shards: int = 1  # of how many

    @classmethod
    def for_shard(cls, name: str, shard: int, shards: int) -> Keys:
        """The keys of shard `shard` of the queue `name` of `shards` shards (shard 0: `for_queue`)."""
        if shard == 0:
            keys = cls.for_queue(name)
            return cls(**{**keys.__dict__, "shards": shards})
        cls.for_queue(name)
        base = f"{PREFIX}:{{{shard_tag(name, shard, shards)}}}:"
        names = ("inbox", "pending", "leased", "payloads", "delayed", "dead", "ids", "meta", "checkpoints")
        return cls(**{key: base + key for key in names}, shard=shard, shards=shards)

    @classmethod
    def for_queue(cls, name: str) -> Keys:
        if not name or "{" in name or "}" in name or any(c.isspace() for c in name):
            raise InvalidArgument(
                f"bad queue name {name!r}: it must be non-empty, without braces or white space"
            )
        base = f"{PREFIX}:{{{name}}}:"
        return cls(
            inbox=name,
            pending=base + "pending",
            leased=base + "leased",
            payloads=base + "payloads",
            delayed=base + "delayed",
            dead=base + "dead",
            ids=base + "ids",
            meta=base + "meta",
            checkpoints=base + "checkpoints",
        )

    def all(self) -> list[str]:
        """Every key of the queue, inbox included: what `Queue.purge` deletes."""
        return [
            self.inbox,
            self.pending,
            self.leased,
            self.payloads,
            self.delayed,
            self.dead,
            self.ids,
            self.meta,
            self.checkpoints,
        ]


def check_shards(shards: int) -> int:
    """`shards`, or `InvalidArgument` when it is no count of shards."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidArgument(f"shards must be a whole number from 1 to {MAX_SHARDS}, not {shards!r}")
    return shards


def slot_of(tag: str) -> int:
    """The cluster slot of a hash tag (every key of a shard has it): redis-py's CRC16."""
    return int(key_slot(tag.encode()))


@lru_cache(maxsize=4096)
def shard_tag(name: str, shard: int, shards: int) -> str:
    """The hash tag of shard `shard` >= 1 of the queue `name` of `shards` shards (see above)."""
    width = SLOTS / shards
    home = int(slot_of(name) // width)
    target = (home + shard) % shards
    low, high = target * width + width / 4, target * width + 3 * width / 4
    k = 0
    while True:
        tag = f"{name}~s{shard}.{k}"
        if low <= slot_of(tag) < max(high, low + 1):
            return tag
        k += 1


def shard_of(tag: str) -> tuple[str, int] | None:
    """(queue name, shard) that a name of the form NAME~sI.K would be as a shard tag: whether it is
    one depends on that queue's shard count (`shard_tag(name, I, count) == tag`); None: no such form."""
    found = _SHARD_TAG.fullmatch(tag)
    return None if found is None else (found.group(1), int(found.group(2)))


def meta_pattern(names: str = "*") -> str:
    """SCAN MATCH pattern of the meta keys of the queues whose names match the glob `names` (braces
    are literal in a Redis glob)."""
    return f"{PREFIX}:{{{names}}}:meta"


def queue_of_meta(key: bytes | str) -> str | None:
    """The queue name a meta key belongs to, or None for a key that only looks like one."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    head, tail = f"{PREFIX}:{{", "}:meta"
    name = text[len(head) : -len(tail)] if text.startswith(head) and text.endswith(tail) else ""
    try:
        Keys.for_queue(name)
    except InvalidArgument:
        return None
    return name
