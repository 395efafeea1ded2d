"""The FPGA back end (issue 7): an HLS C++ project of a network of the model, with on-chip
event-driven e-prop, and the fixed-point arithmetic it uses (docs/design/hls.md)."""
