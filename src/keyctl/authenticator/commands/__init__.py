"""One module per CTAP command: parse the request map into a dataclass, then handle it."""
