"""Reference kernels: our own NumPy implementations, independent of the learner's package.

They are hidden from learners in a classroom release and never mounted into the grading sandbox.
tests/test_references.py cross-checks each against PyTorch's built-ins (the independent oracle).
"""
