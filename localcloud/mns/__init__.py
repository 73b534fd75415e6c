"""localcloud: mns."""
