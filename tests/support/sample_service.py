"""A served service taken through the provider's three sample answers, to a known end state."""

from __future__ import annotations

from eventapi.sim import SimServer
from eventapi.sim.feeds import sample_feed
from tests.support.service_process import ServiceProcess

SAMPLE_RANGE = "/search?starts_at=2021-02-01&ends_at=2022-07-03"
LATEST = {  # title: (end_time, min_price, max_price) after the third sample answer
    "Camela en concierto": ("21:30:00", 20.0, 30.0),
    "Pantomima Full": ("21:30:00", 55.0, 55.0),
    "Los Morancos": ("21:00:00", 65.0, 65.0),
}


def latest_values(service: ServiceProcess) -> dict[str, tuple[object, ...]]:
    status, body = service.get(SAMPLE_RANGE)
    assert status == 200
    return {e["title"]: (e["end_time"], e["min_price"], e["max_price"]) for e in body["data"]["events"]}


def serve_the_three_samples(service: ServiceProcess, sim: SimServer) -> None:
    """Let the service take answers 1, 2 and 3, then keep answering 3 so the end state is fixed."""
    service.wait_until(lambda: sim.stats()["served"] >= 3, "the provider served its three answers")
    sim.set_feeds([sample_feed("response_3_planlist.xml")])
    service.wait_until(lambda: latest_values(service) == LATEST, "the third answer's values are served")
