"""Reference implementations and NEST runners for e-prop regression tests."""
