"""localcloud: fc."""
