"""RFC 6962 hashing and proofs against published vectors and an independent reference."""

from __future__ import annotations

import pytest
from audit_ref import mth, path, proof

from bastion.audit.merkle import (
    Frontier,
    consistency_path,
    fold_right,
    inclusion_path,
    leaf_hash,
    perfect_ranges,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference leaves and tree heads (sizes 0..8).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
             "5051525354555657", "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {  # (index, size) -> audit path, from the CT test suite
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

ENTRIES = [f"entry-{i}".encode() for i in range(41)]  # 41: many non-power-of-two sizes


def _tree(entries: list[bytes]) -> tuple[Frontier, dict[tuple[int, int], bytes]]:
    """Build with Frontier and return it plus every perfect subtree hash it reported."""
    frontier = Frontier()
    nodes: dict[tuple[int, int], bytes] = {}
    for i, e in enumerate(entries):
        h = leaf_hash(e)
        nodes[(0, i)] = h
        for level, index, digest in frontier.append(h):
            nodes[(level, index)] = digest
    return frontier, nodes


def _subtree(nodes: dict[tuple[int, int], bytes]):
    return lambda a, b: fold_right([nodes[p] for p in perfect_ranges(a, b)])


def test_frontier_roots_match_published_ct_vectors() -> None:
    frontier = Frontier()
    assert frontier.root().hex() == CT_ROOTS[0]
    for n, data in enumerate(CT_LEAVES, start=1):
        frontier.append(leaf_hash(data))
        assert frontier.root().hex() == CT_ROOTS[n], n


def test_audit_paths_match_published_ct_vectors() -> None:
    _, nodes = _tree(CT_LEAVES)
    for (index, size), expected in CT_PATHS.items():
        got = inclusion_path(index, size, _subtree(nodes))
        assert [h.hex() for h in got] == expected
        root = bytes.fromhex(CT_ROOTS[size])
        assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, got, root)


def test_reference_agrees_with_published_roots() -> None:
    for n in range(9):
        assert mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]


@pytest.mark.parametrize("size", range(1, len(ENTRIES) + 1))
def test_roots_and_stored_nodes_match_reference(size: int) -> None:
    frontier, nodes = _tree(ENTRIES[:size])
    assert frontier.root() == mth(ENTRIES[:size])
    for (level, index), digest in nodes.items():
        assert digest == mth(ENTRIES[index << level : (index + 1) << level])
    restored = Frontier.from_bytes(size, frontier.to_bytes())
    assert restored.root() == frontier.root()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 41])
def test_inclusion_proofs_match_reference_and_verify(size: int) -> None:
    _, nodes = _tree(ENTRIES)
    root = mth(ENTRIES[:size])
    for index in range(size):
        got = inclusion_path(index, size, _subtree(nodes))
        assert got == path(index, ENTRIES[:size])
        leaf = leaf_hash(ENTRIES[index])
        assert verify_inclusion(leaf, index, size, got, root)
        # every way of lying fails
        assert not verify_inclusion(leaf_hash(b"forged"), index, size, got, root)
        assert not verify_inclusion(
            leaf, index, size, got, mth(ENTRIES[: size - 1]) if size > 1 else b"x"
        )
        if size > 1:
            assert not verify_inclusion(leaf, (index + 1) % size, size, got, root)
            assert not verify_inclusion(leaf, index, size, got[:-1], root)
            assert not verify_inclusion(leaf, index, size, [*got, got[0]], root)
            flipped = [bytes([got[0][0] ^ 1]) + got[0][1:], *got[1:]]
            assert not verify_inclusion(leaf, index, size, flipped, root)
        assert not verify_inclusion(leaf, size, size, got, root)


@pytest.mark.parametrize("new", [2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 23, 32, 41])
def test_consistency_proofs_match_reference_and_verify(new: int) -> None:
    _, nodes = _tree(ENTRIES)
    new_root = mth(ENTRIES[:new])
    for old in range(1, new):
        old_root = mth(ENTRIES[:old])
        got = consistency_path(old, new, _subtree(nodes))
        assert got == proof(old, ENTRIES[:new])
        assert verify_consistency(old, new, old_root, new_root, got)
        assert not verify_consistency(old, new, mth(ENTRIES[1 : old + 1]), new_root, got)
        assert not verify_consistency(old, new, old_root, mth(ENTRIES[1 : new + 1]), got)
        assert not verify_consistency(old, new, old_root, new_root, got[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [*got, got[0]])
        if old + 1 < new:
            assert not verify_consistency(old + 1, new, old_root, new_root, got)


def test_consistency_edge_cases() -> None:
    root = mth(ENTRIES[:5])
    assert consistency_path(5, 5, lambda a, b: b"") == []
    assert verify_consistency(5, 5, root, root, [])
    assert not verify_consistency(5, 5, root, mth(ENTRIES[:4]), [])
    assert verify_consistency(0, 5, mth([]), root, [])
    assert not verify_consistency(6, 5, root, root, [])
    with pytest.raises(ValueError):
        consistency_path(6, 5, lambda a, b: b"")
    with pytest.raises(ValueError):
        inclusion_path(5, 5, lambda a, b: b"")


def test_leaves_and_nodes_are_domain_separated() -> None:
    """A node's children, presented as one leaf, must not produce the node's hash."""
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    _, nodes = _tree([b"a", b"b"])
    assert leaf_hash(left + right) != nodes[(1, 0)]
