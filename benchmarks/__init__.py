"""tbfast benchmark harness: ``python -m benchmarks [quick|full] [--only SUITES]``."""
