"""Load tests of eventapi with locust: `make load` runs loadtest/run.py."""
