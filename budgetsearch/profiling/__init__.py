"""Measuring this machine: the networks timed, the one timer, the fit and the drift check.

``budgetsearch.cost`` prices; this package builds networks (built-in, generated and torchvision
ones), times them in a runtime (PyTorch eager or onnxruntime) and fits a measured
:class:`~budgetsearch.cost.DeviceProfile`:

- :mod:`budgetsearch.profiling.timing`: the one timer and method every measured number uses.
- :mod:`budgetsearch.profiling.networks`: the varied fit set (plain, residual, bottleneck,
  depthwise-separable, inverted residual, grouped, squeeze-excitation, concat, shuffle; dense and
  pruned; several input sizes), in families for the leave-one-family-out error.
- :mod:`budgetsearch.profiling.fit`: fits the per-op-kind model and writes the profile.
- :mod:`budgetsearch.profiling.small_gemm`: times an eager profile's small-GEMM table (what a
  dense conv on PyTorch's GEMM path pays per MB of weights by its output area).
- :mod:`budgetsearch.profiling.anchors`: the ≤ 2 s drift check that
  :func:`~budgetsearch.cost.load_profile` runs on a measured
  profile of this machine (it imports only torch and ``budgetsearch.cost``).

Submodules are imported on demand: ``import budgetsearch.profiling`` imports nothing heavy.
"""
