"""The state store: SQLite (stdlib), one file in the state directory."""
