"""The hub: the transport edge nodes connect to (websocket over TLS, one connection per node)."""
