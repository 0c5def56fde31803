"""Planted stores for testing and calibrating the analysis: the shipped sweeps' runs with
hand-made effects (`planted.store`) and the calibration driver (`planted.calibrate`).
Tests, `make bench` and `make calibrate` use it; `analysis` never imports it."""
