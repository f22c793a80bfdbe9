import pytest

from samplegen import generate


@pytest.fixture(scope="session")
def sample5k(tmp_path_factory):
    """5,000 persons with the default rates: large enough to measure rates, small enough to make in a second."""
    out = tmp_path_factory.mktemp("sample5k")
    manifest = generate(out, users=5000, seed=7)
    return out, manifest
