"""Replication between two databases, as CouchDB's Replication Protocol has it: a
client of both ends (:mod:`.peers`: a database of this process or one behind a URL),
not a part of the server. The server's ``_replicate`` and ``_replicator`` use it; so
may any program::

    from settee.store import open_database
    from settee.store.sync import LocalPeer, Replication, parse_spec
    a, b = open_database("./data", "a"), open_database("./data", "b")
    Replication(parse_spec({"source": "a", "target": "b"}), LocalPeer(a), LocalPeer(b),
                "me").run()
"""
from .endpoints import Endpoint, parse_endpoint, replication_id, strip_credentials
from .engine import Replication
from .peers import LocalPeer, Peer, PeerError, PeerNotFound
from .remote import HttpPeer
from .spec import STATE_FIELDS, Spec, parse_spec

__all__ = ["Endpoint", "HttpPeer", "LocalPeer", "Peer", "PeerError", "PeerNotFound",
           "Replication", "STATE_FIELDS", "Spec", "parse_endpoint", "parse_spec",
           "replication_id", "strip_credentials"]
