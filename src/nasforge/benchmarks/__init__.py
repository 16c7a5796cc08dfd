"""Tabular benchmarks: the NAS-Bench-201 CIFAR-10 table (``nb201_table``), a synthetic
fidelity layer over it (``fidelity``), and ``nasforge bench`` (``bench``, ``commands``),
which compares search strategies over many seeds without training."""
