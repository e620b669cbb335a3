"""cnncli passes command (being written)."""
