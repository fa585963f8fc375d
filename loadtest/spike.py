"""The spike scenario's shape: a calm baseline, a ramp to the peak within 10 s, a hold, and back.

Loaded next to the locustfile (`-f loadtest/locustfile.py,loadtest/spike.py`); the peak is `-u`
(the shape takes it from the parsed options, so locust warns that it "ignores" it), the baseline a
tenth of it, and the whole run lasts `-t`.
"""

from __future__ import annotations

from locust import LoadTestShape

RAMP_SECONDS = 10  # the spike: from baseline to the most users the box can drive within 10 s
BASELINE_SECONDS = 10


class SpikeShape(LoadTestShape):
    """Baseline for 10 s, ramp to the peak in 10 s, hold until 10 s before the end, baseline again."""

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = max(int(getattr(options, "num_users", None) or 200), 10)
        run_time = int(getattr(options, "run_time", None) or 60)
        baseline = max(peak // 10, 1)
        now = self.get_run_time()
        if now >= run_time:
            return None
        if now < BASELINE_SECONDS or now >= run_time - BASELINE_SECONDS:
            return baseline, peak  # dropping back is immediate: users are stopped at once
        return peak, (peak - baseline) / RAMP_SECONDS
