"""localcloud: dds."""
