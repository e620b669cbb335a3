"""cnncli shape command (being written)."""
