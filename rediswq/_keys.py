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
``rediswq:{NAME}:leased``   zset  one member per live lease, the *handle* msgpack
                                  ``[token, id, attempt, worker, leased_at_ms]``; score: deadline in ms;
                                  plus one sentinel member, ``LEASED_SENTINEL``, score +inf (below)
``rediswq:{NAME}:payloads`` hash  id -> payload of each leased item; plus the sentinel field ``""``
                                  (no item id is empty), value ``LEASED_SENTINEL``
``rediswq:{NAME}:delayed``  zset  envelopes waiting out a retry backoff; score: when due, in ms
``rediswq:{NAME}:dead``     hash  id -> msgpack ``[id, attempts, payload, error, dead_at_ms]``
``rediswq:{NAME}:ids``      set   caller-given ids that are live (pending, delayed or leased)
``rediswq:{NAME}:meta``     hash  counters ``enqueued completed failed retried expired dead_lettered
                                  released``, the id sequence ``seq``, the lease token
                                  sequence ``token``, and ``closed`` (1 once closed)
========================  ======  ==============================================================

The two sentinels are written by the first lease and stay until `Queue.purge`. Being longer than 64
bytes, they make Redis store ``leased`` as a skiplist and ``payloads`` as a hashtable from the start
(and keep them so: the keys never empty), instead of the listpack it uses for small keys, whose every
ZADD, HSET and HDEL scans the whole key: batches of 100 leases drain about a third faster. Every reader
ignores them: counts subtract the member, the wait hint skips +inf, reclaim (scores up to now) never
reaches it, `Queue.holders` skips it.

Times are milliseconds on Redis's clock (``TIME``). A pending item is its envelope alone, about 9 bytes
more than the bare payload, so a long queue costs little more than a plain list.
"""

from __future__ import annotations

from dataclasses import dataclass

from rediswq.errors import InvalidArgument

PREFIX = "rediswq"

#: The leased zset's permanent member (score +inf) and the payloads hash's value for field "";
#: the same string in lease.lua and stats.lua.
LEASED_SENTINEL = b"rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease"
#: The payloads hash's permanent field: item ids are never empty.
PAYLOADS_SENTINEL_FIELD = b""


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
        ]
