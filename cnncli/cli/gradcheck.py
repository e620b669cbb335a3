"""cnncli gradcheck command (being written)."""
