"""The imaging engine phizer runs on: stock Pillow or Pillow-SIMD.

Both install the same ``PIL`` package; ``phizer.engine.detect`` tells them
apart, and ``python -m phizer.engine simd`` turns an environment into the
SIMD engine (``phizer.engine.simd``). Nothing is imported here, so the
command runs even where no ``PIL`` is installed.
"""
