"""The contract every backend (and every stack of byte layers) keeps, as a pytest suite
that ships with Settee so that a backend written elsewhere can run it too::

    from settee.store.testing import BackendContract

    class TestMyBackend(BackendContract):
        def make_store(self, path):          # a pytest tmp_path
            return MyBackend(str(path / "store"))

``BackendContract`` is not collected by pytest itself (no ``Test`` prefix); each
subclass sets ``make_store(self, path)``. ``persistent`` says whether a store reopened
on the same path sees what was written. Importing this module needs pytest (the
``test`` extra); nothing else in Settee imports it.
"""
from __future__ import annotations

import threading

import pytest

from settee.store.exceptions import InvalidKey

HOSTILE_KEYS = ["../../etc/passwd", "..", ".", "/", "a/b/c", "with space", "ünïcødé-ключ-鍵",
                "emoji-😀", "x" * 1000, "%2F..%2F", "CON", "nul.txt", "a\\b", "-rf", "~"]


class BackendContract:
    persistent = True

    def make_store(self, path):  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path):
        s = self.make_store(tmp_path)
        yield s
        s.close()

    def test_a_written_value_reads_back(self, store):
        store["k"] = b"value"
        assert store["k"] == b"value"

    def test_a_missing_key_is_a_key_error(self, store):
        with pytest.raises(KeyError):
            store["nope"]
        assert "nope" not in store
        assert store.get("nope") is None

    def test_overwrite_replaces(self, store):
        store["k"] = b"1"
        store["k"] = b"2"
        assert store["k"] == b"2"
        assert len(store) == 1

    def test_delete_removes_and_missing_delete_raises(self, store):
        store["k"] = b"1"
        del store["k"]
        assert "k" not in store
        with pytest.raises(KeyError):
            del store["k"]

    def test_binary_and_empty_values_survive(self, store):
        store["bin"] = bytes(range(256)) * 3
        store["empty"] = b""
        assert store["bin"] == bytes(range(256)) * 3
        assert store["empty"] == b""

    def test_values_must_be_bytes(self, store):
        with pytest.raises(TypeError):
            store["k"] = "text"

    def test_keys_must_be_nonempty_strings(self, store):
        for bad in ("", 42, None):
            with pytest.raises((InvalidKey, TypeError)):
                store[bad] = b"x"

    @pytest.mark.parametrize("key", HOSTILE_KEYS)
    def test_hostile_keys_are_stored_as_themselves(self, store, key):
        store[key] = key.encode()
        assert store[key] == key.encode()
        assert list(store) == [key]

    def test_iteration_and_len(self, store):
        keys = {f"k{i}" for i in range(50)}
        for k in keys:
            store[k] = k.encode()
        assert set(store) == keys
        assert len(store) == 50

    def test_range_is_ordered_by_code_point(self, store):
        keys = ["b", "a", "ab", "é", "Z", "a/", "a0", "z", "\u4e2d", "😀"]
        for k in keys:
            store[k] = k.encode()
        assert list(store.range(keys_only=True)) == sorted(keys)
        assert [k for k, _ in store.range()] == sorted(keys)
        assert [v for _, v in store.range()] == [k.encode() for k in sorted(keys)]

    def test_range_bounds_descending_and_inclusive_end(self, store):
        for i in range(20):
            store[f"k{i:02d}"] = b"%d" % i
        assert list(store.range("k05", "k08", keys_only=True)) == ["k05", "k06", "k07", "k08"]
        assert list(store.range("k05", "k08", inclusive_end=False, keys_only=True)) == [
            "k05", "k06", "k07"]
        assert list(store.range("k05", "k08", descending=True, keys_only=True)) == [
            "k08", "k07", "k06", "k05"]
        assert list(store.range(None, "k01", keys_only=True)) == ["k00", "k01"]
        assert list(store.range("k18", None, keys_only=True)) == ["k18", "k19"]

    def test_long_ranges_page_through_everything(self, store):
        with store.transaction():
            for i in range(1500):
                store[f"n{i:05d}"] = b"x"
        assert len(list(store.range(keys_only=True))) == 1500
        desc = list(store.range(descending=True, keys_only=True))
        assert desc[0] == "n01499" and desc[-1] == "n00000" and len(desc) == 1500

    def test_prefix(self, store):
        for k in ("a/1", "a/2", "b/1", "a", "a0"):
            store[k] = b"."
        assert list(store.prefix("a/", keys_only=True)) == ["a/1", "a/2"]

    def test_transaction_commits_all_writes(self, store):
        with store.transaction():
            store["a"] = b"1"
            store["b"] = b"2"
            assert store["a"] == b"1"
        assert store["a"] == b"1" and store["b"] == b"2"

    def test_transaction_rolls_back_on_error(self, store):
        store["a"] = b"before"
        with pytest.raises(RuntimeError):
            with store.transaction():
                store["a"] = b"after"
                store["new"] = b"x"
                del store["a"]
                raise RuntimeError("boom")
        assert store["a"] == b"before"
        assert "new" not in store

    def test_nested_transactions_join_the_outer_one(self, store):
        with pytest.raises(RuntimeError):
            with store.transaction():
                with store.transaction():
                    store["inner"] = b"1"
                raise RuntimeError("outer fails")
        assert "inner" not in store

    def test_threads_incrementing_in_transactions_lose_no_update(self, store):
        store["n"] = b"0"

        def work():
            for _ in range(50):
                with store.transaction():
                    store["n"] = b"%d" % (int(store["n"]) + 1)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store["n"] == b"200"

    def test_put_many_and_delete_many(self, store):
        store.put_many([(f"m{i}", b"%d" % i) for i in range(300)])
        assert len(store) == 300 and store["m299"] == b"299"
        store.delete_many([f"m{i}" for i in range(0, 300, 2)] + ["never-there"])
        assert sorted(store) == sorted(f"m{i}" for i in range(1, 300, 2))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.put_many([("rolled", b"back")])
                raise RuntimeError("abort")
        assert "rolled" not in store

    def test_delete_range_deletes_that_half_open_range_only(self, store, monkeypatch):
        from settee.store import base
        monkeypatch.setattr(base, "DELETE_BATCH", 7)      # several batches (generic path)
        store.put_many([(f"r{i:03d}", b"x") for i in range(60)] + [("q", b"1"), ("s", b"2")])
        assert store.delete_range("r010", "r050") == 40
        assert sorted(store) == ["q"] + [f"r{i:03d}" for i in range(10)] + \
            [f"r{i:03d}" for i in range(50, 60)] + ["s"]
        assert store.delete_range("r100", "r200") == 0

    def test_put_checked_writes_pairs_checked_elsewhere(self, store):
        if not hasattr(store, "put_checked"):
            pytest.skip("put_checked is a backend's, below the layers")
        pairs = [(store.check_key(f"c{i}"), store.check_value(b"%d" % i)) for i in range(450)]
        store.put_checked(pairs)
        assert len(store) == 450 and store["c449"] == b"449"
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.put_checked([("rolled", b"back")])
                raise RuntimeError("abort")
        assert "rolled" not in store

    def test_get_many(self, store):
        store["a"], store["b"] = b"1", b"2"
        assert store.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}

    def test_reopened_store_keeps_its_data(self, tmp_path):
        if not self.persistent:
            pytest.skip("this backend keeps nothing after close")
        store = self.make_store(tmp_path)
        store["kept"] = b"yes"
        with store.transaction():
            store["t1"] = b"1"
            store["t2"] = b"2"
        store.close()
        again = self.make_store(tmp_path)
        try:
            assert again["kept"] == b"yes" and again["t2"] == b"2"
        finally:
            again.close()
