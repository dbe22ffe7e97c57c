"""Unit tests of the engine: the in-memory transport and a fake clock, no server and no sleeping (issue 14)."""
