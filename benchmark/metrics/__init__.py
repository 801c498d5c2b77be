"""Benchmark metrics with stated conventions (defaults = BasicSR's).

- :mod:`benchmark.metrics.pixel`: ``psnr``, ``ssim`` (RGB 0–255, float64, no border crop, window 11 / σ 1.5);
- :mod:`benchmark.metrics.perceptual`: LPIPS v0.1 AlexNet on RGB in [-1, 1];
- :mod:`benchmark.metrics.fid`: pytorch-fid pool3 features and the Fréchet distance;
- :mod:`benchmark.metrics.identity`: ``Id(<embedder>)``, cosine similarity of identity embeddings;
- :mod:`benchmark.metrics.batched`: per-image accumulating classes with ``name`` and ``higher_is_better``;
- :mod:`benchmark.metrics.registry`: ``build_metric(name, **options)``.

Nothing heavy is imported here: import the submodule you need.
"""
