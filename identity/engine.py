"""The one sequential step: greedy union-find over links in priority order, refusing unions that would give a
set two values of one unique (type, scope) class.

Everything around it (normalizing, factorizing, sorting, mapping roots back to ids) is set-at-a-time polars.
The kernel is written once, over plain indexable sequences, and compiled by numba when it is installed; the
interpreted fallback runs the identical code on Python lists, so both give the same partition by construction.
"""

from __future__ import annotations

import os

import numpy as np


def _greedy_kernel(
    link_record, link_identity, node_class, parent, size, head, tail, next_node, mark, rejected, joined
):
    """Apply the links in order; `rejected[k]` gets the conflicting class of a refused link (else stays -1), and
    `joined[k]` is set to 1 when link k united two sets (the spanning-forest edges `explain` walks).

    Each set keeps a linked list (head/tail/next_node) of its members that belong to a unique class. A set holds
    at most one member per class, so the lists stay as short as the number of classes a person touches, and a
    conflict check is one walk of each list with `mark` (indexed by class) as scratch.
    Returns the number of refused links; `parent` ends fully compressed (parent[i] is i's root).
    """
    refused = 0
    for k in range(len(link_record)):
        a = link_record[k]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        b = link_identity[k]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a == b:
            continue
        if head[a] >= 0 and head[b] >= 0:
            u = head[a]
            while u >= 0:
                mark[node_class[u]] = u
                u = next_node[u]
            # class ids are numbered in priority order, so the smallest conflicting one is the reason reported
            conflict = -1
            u = head[b]
            while u >= 0:
                c = node_class[u]
                if mark[c] >= 0 and (conflict < 0 or c < conflict):
                    conflict = c
                u = next_node[u]
            u = head[a]
            while u >= 0:
                mark[node_class[u]] = -1
                u = next_node[u]
            if conflict >= 0:
                rejected[k] = conflict
                refused += 1
                continue
        joined[k] = 1
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        if head[b] >= 0:
            if head[a] < 0:
                head[a] = head[b]
            else:
                next_node[tail[a]] = head[b]
            tail[a] = tail[b]
    for i in range(len(parent)):
        root = i
        while parent[root] != root:
            root = parent[root]
        j = i
        while parent[j] != root:
            step = parent[j]
            parent[j] = root
            j = step
    return refused


try:
    if os.environ.get("ONEID_ENGINE", "").lower() == "python":
        raise ImportError("numba disabled by ONEID_ENGINE=python")
    from numba import njit

    _compiled_kernel = njit(cache=True, nogil=True)(_greedy_kernel)
except ImportError:
    _compiled_kernel = None

HAVE_NUMBA = _compiled_kernel is not None


def greedy_union(
    n_nodes: int,
    link_record: np.ndarray,
    link_identity: np.ndarray,
    node_class: np.ndarray,
    n_classes: int,
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(root of every node, conflicting class per link or -1, 1 per link that united two sets else 0).
    Links must already be in priority order.

    engine: "auto" (numba when available), "numba" (error if missing) or "python".
    """
    if engine not in ("auto", "numba", "python"):
        raise ValueError(f"engine must be auto, numba or python, got {engine!r}")
    if engine == "numba" and not HAVE_NUMBA:
        raise RuntimeError("engine='numba' asked for, but numba is not importable")
    n_links = len(link_record)
    parent = np.arange(n_nodes, dtype=np.int64)
    size = np.ones(n_nodes, dtype=np.int64)
    node_class = np.asarray(node_class, dtype=np.int64)
    head = np.where(node_class >= 0, np.arange(n_nodes, dtype=np.int64), -1)
    tail = head.copy()
    next_node = np.full(n_nodes, -1, dtype=np.int64)
    mark = np.full(max(n_classes, 1), -1, dtype=np.int64)
    rejected = np.full(n_links, -1, dtype=np.int64)
    joined = np.zeros(n_links, dtype=np.int8)
    link_record = np.ascontiguousarray(link_record, dtype=np.int64)
    link_identity = np.ascontiguousarray(link_identity, dtype=np.int64)

    if engine != "python" and HAVE_NUMBA:
        _compiled_kernel(
            link_record, link_identity, node_class, parent, size, head, tail, next_node, mark, rejected, joined
        )
        return parent, rejected, joined

    # lists, not arrays: element access on numpy arrays from the interpreter is several times slower
    arrays = [parent, size, head, tail, next_node, mark, rejected, joined]
    lists = [array.tolist() for array in arrays]
    _greedy_kernel(link_record.tolist(), link_identity.tolist(), node_class.tolist(), *lists)
    return (
        np.asarray(lists[0], dtype=np.int64),
        np.asarray(lists[6], dtype=np.int64),
        np.asarray(lists[7], dtype=np.int8),
    )
