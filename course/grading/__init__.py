"""Grading across a trust boundary: student code runs only in worker processes."""
