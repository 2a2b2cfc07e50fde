"""Schema-driven fuzzing of the API: schemathesis generates requests from the OpenAPI document
(valid and invalid bodies, odd strings, huge numbers) for every operation, as a manager and as a
member, on a populated world; no request may end in a server error, and every error answers the
documented JSON shape. Bounded (a few examples per operation) to stay well under a minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.test_web_support import Rig, rig

#: Examples per operation: the manager reaches every operation's success path; the member
#: mostly its refusals.
EXAMPLES = {"max": 10, "sid": 4}


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("fuzz")) as r:
        yield r


@pytest.mark.parametrize("who", ["max", "sid"])
def test_no_request_ends_in_a_server_error(world: Rig, who: str) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    headers = world.bearer(who)
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    for operation in operations:
        _fuzz(world, operation, headers, failures, statuses, EXAMPLES[who])()
    assert not failures, "\n".join(failures[:20])
    # the run got past validation too, into the services (not only 4xx answers)
    assert sum(n for code, n in statuses.items() if code < 300) >= 20, statuses


def _fuzz(world: Rig, operation, headers, failures, statuses, examples):  # noqa: ANN001, ANN202
    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        with world.isolated():
            response = case.call(headers=headers)
        statuses[response.status_code] += 1
        label = f"{operation.method.upper()} {case.formatted_path}"
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
            return
        if response.status_code >= 400:
            err = response.json().get("error", {})
            if not (err.get("code") and err.get("message")):
                failures.append(f"{label}: error without code/message: {err}")

    return run
