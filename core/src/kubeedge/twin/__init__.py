"""The device twin module and its SQLite store."""
