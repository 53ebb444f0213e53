"""Triton implementations; imported only from inside the Triton path of :mod:`erasus.kernels`."""
