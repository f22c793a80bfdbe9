import pytest

from samplegen import generate


@pytest.fixture(scope="session", params=[1.0, 2.5], ids=["activity1", "activity2.5"])
def sample5k(request, tmp_path_factory):
    """5,000 persons with the default rates: large enough to measure rates, small enough to make in a second.

    Made at the default activity and at 2.5 (about 7 rows per person instead of 5), so every invariant the tests
    using it check must also hold for the busier brands benches generate.
    """
    out = tmp_path_factory.mktemp("sample5k")
    manifest = generate(out, users=5000, seed=7, activity=request.param)
    return out, manifest
