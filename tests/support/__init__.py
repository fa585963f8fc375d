"""Helpers shared by the tests, the benchmarks and the load tests: real processes, fakes, clients."""
