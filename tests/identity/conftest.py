import polars as pl
import pytest

COLUMNS = ["source", "record_id", "id_type", "scope", "id_value", "observed_at"]


def observations(rows, strength=False) -> pl.DataFrame:
    """Rows of (source, record_id, id_type, scope, id_value, observed_at[, strength]) as an observations frame."""
    columns = COLUMNS + (["strength"] if strength else [])
    schema = {column: pl.String for column in columns}
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(
        pl.col("observed_at").str.to_datetime(time_unit="us", strict=False)
    )


@pytest.fixture
def make_observations():
    return observations
