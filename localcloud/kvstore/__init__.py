"""localcloud: kvstore."""
