"""The one Definitions object loads, and its assets form ONE lineage graph from raw files to marts."""

from collections import defaultdict

from dagster import AssetKey

from pipelines.defs.dbt import OneIdDbtTranslator, dbt_build_args, dbt_layer
from pipelines.definitions import FULL_RUN_JOB_NAME, defs


def _asset_graph():
    graph = defs.resolve_asset_graph()
    edges = defaultdict(set)
    for key in graph.get_all_asset_keys():
        for parent in graph.get(key).parent_keys:
            edges[parent].add(key)
    return graph, edges


def _reachable(edges, start):
    seen, stack = {start}, [start]
    while stack:
        for child in edges[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def test_every_ingest_asset_reaches_the_marts_through_identity():
    graph, edges = _asset_graph()
    keys = set(graph.get_all_asset_keys())
    raw_keys = {key for key in keys if key.path[0] == "raw"}
    assert {key.path[1] for key in raw_keys} == {
        "oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals",
    }
    for raw_key in raw_keys:
        downstream = _reachable(edges, raw_key)
        assert AssetKey(["identity", "record_map"]) in downstream, raw_key
        assert AssetKey(["marts", "dim_users"]) in downstream, raw_key
    assert AssetKey(["marts", "fct_orders"]) in _reachable(edges, AssetKey(["raw", "orders"]))


def test_graph_is_one_connected_component():
    graph, edges = _asset_graph()
    undirected = defaultdict(set)
    for parent, children in edges.items():
        for child in children:
            undirected[parent].add(child)
            undirected[child].add(parent)
    keys = set(graph.get_all_asset_keys())
    component = _reachable(undirected, next(iter(sorted(keys))))
    assert component == keys, f"not connected: {sorted(k.to_user_string() for k in keys - component)}"


def test_no_dbt_source_became_a_stray_asset():
    graph, _ = _asset_graph()
    # a dbt source without meta.dagster.asset_key would appear as an unmaterializable key like ['raw_x', 'y']
    for key in graph.get_all_asset_keys():
        assert key.path[0] in {"raw", "identity", "staging", "intermediate", "marts", "seeds", "publish"}, key


def test_full_run_job_and_groups():
    assert defs.resolve_job_def(FULL_RUN_JOB_NAME) is not None
    graph, _ = _asset_graph()
    groups = {key.path[0]: graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups["raw"] == "ingest"
    assert groups["identity"] == "identity"
    assert groups["marts"] == "marts"
    assert groups["staging"] == "staging"
    assert groups["seeds"] == "lookups"
    assert groups["publish"] == "publish"


def test_translator_layers_and_build_args():
    model = {"resource_type": "model", "fqn": ["oneid", "marts", "core", "dim_users"], "schema": "marts",
             "name": "dim_users"}
    assert dbt_layer(model) == "marts"
    assert OneIdDbtTranslator().get_asset_key(model) == AssetKey(["marts", "dim_users"])
    assert dbt_layer({"resource_type": "seed", "fqn": ["oneid", "channel_codes"]}) is None
    assert dbt_build_args() == ["build"]


def test_publish_is_downstream_of_every_mart_and_seed_and_last():
    graph, edges = _asset_graph()
    publish_key = AssetKey(["publish", "analyst_db"])
    marts_and_seeds = {k for k in graph.get_all_asset_keys() if k.path[0] in {"marts", "seeds"}}
    assert len(marts_and_seeds) >= 14
    assert set(graph.get(publish_key).parent_keys) == marts_and_seeds
    assert edges[publish_key] == set()
    assert publish_key in _reachable(edges, AssetKey(["raw", "orders"]))


def test_every_check_is_on_its_asset():
    graph, _ = _asset_graph()
    checks = defaultdict(set)
    for check in graph.asset_check_keys:
        checks[check.asset_key].add(check.name)
    # Great Expectations suites on every raw table
    for source in ("oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals"):
        assert {"contract", "quality"} <= checks[AssetKey(["raw", source])], source
    assert "identity_graph_health" in checks[AssetKey(["identity", "record_map"])]
    # dbt tests, emitted as asset checks by dagster-dbt: generic ones on their model, singular ones too
    assert "unique_fct_orders_order_key" in checks[AssetKey(["marts", "fct_orders"])]
    assert any(name.startswith("not_null_dim_users") for name in checks[AssetKey(["marts", "dim_users"])])
    dbt_checks = {c for c in graph.asset_check_keys if c.asset_key.path[0] in {"staging", "intermediate", "marts",
                                                                              "seeds"}}
    assert len(dbt_checks) >= 100
    blocking = {c.name for c in graph.asset_check_keys if graph.get_check_spec(c).blocking}
    assert {"contract", "identity_graph_health"} <= blocking
