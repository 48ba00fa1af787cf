from __future__ import annotations

from tests.sidecar.harness import config_yaml, shares, url


async def test_round_robin_spreads_requests_over_three_backends(backends, sidecar_factory, client):
    bs = await backends(3)
    sc = await sidecar_factory(
        config_yaml(
            [
                {"name": "api", "discovery": {"static": [b.address for b in bs]}},
            ]
        )
    )
    texts = []
    for _ in range(30):
        async with client.get(url(sc, "upstream:api", "/x?y=1")) as r:
            assert r.status == 200
            assert r.headers["x-pilotfish-attempts"] == "1"
            texts.append(await r.text())
    assert shares(texts) == {"b0": 10, "b1": 10, "b2": 10}
