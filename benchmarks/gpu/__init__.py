"""The sections of ``benchmarks/bench_gpu.py``, one module per thing measured.

``common`` (settings, rows, inputs, environment record, JSON writing) and ``timing`` (CUDA
event / CUDA graph timing, peak memory) serve the sections: ``ceilings`` (device copy and
matmul rates), ``checks`` (fused op against the reference), ``op`` (the aggregation op and
its variants), ``baselines`` (context modules and ops it is compared with), ``sweep`` (kernel
blockings, compiled kernels' resources), ``models`` (FCN inference and training steps) and
``report`` (traffic model, targets, the printed table).
"""
