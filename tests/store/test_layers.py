"""The codec layers (compression, encryption, serialization) and the settings they read."""
from __future__ import annotations

import base64
import os
import zlib

import pytest

from settee.config import load_settings
from settee.examples.invoices import InvoiceSchema
from settee.store.backends.memory import MemoryBackend
from settee.store.catalog import Catalog
from settee.store.document import Doc, Meta
from settee.store.exceptions import (
    BadRequest,
    ConfigurationError,
    CorruptValue,
    DecryptionError,
    ValidationFailed,
)
from settee.store.layers.compression import ZlibCompression
from settee.store.layers.encryption import AESGCMEncryption
from settee.store.layers.serialization import JSONSerializer
from settee.store.layers.validation import Validation, formencode, validation_layer
from settee.store.revtree import RevTree
from settee.store.stack import check_stack

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_KEY = "ff" * 32


# -- compression ---------------------------------------------------------------------
@pytest.fixture
def zipped():
    backend = MemoryBackend()
    return backend, ZlibCompression(backend, level=6, min_size=128)


def test_small_values_are_stored_raw_behind_a_marker(zipped):
    backend, layer = zipped
    layer["k"] = b"short"
    assert backend["k"] == b"Rshort"
    assert layer["k"] == b"short"


def test_big_compressible_values_are_compressed(zipped):
    backend, layer = zipped
    value = b"the same line again\n" * 200
    layer["k"] = value
    stored = backend["k"]
    assert stored[:1] == b"Z" and len(stored) < len(value) // 4
    assert zlib.decompress(stored[1:]) == value
    assert layer["k"] == value


def test_values_that_do_not_shrink_are_stored_raw(zipped):
    backend, layer = zipped
    value = os.urandom(4096)
    layer["k"] = value
    assert backend["k"] == b"R" + value
    assert layer["k"] == value


def test_reading_follows_the_marker_not_the_settings(zipped):
    backend, _ = zipped
    never = ZlibCompression(backend, level=0)       # would never compress a write
    backend["z"] = b"Z" + zlib.compress(b"x" * 1000)
    backend["r"] = b"Rplain"
    assert never["z"] == b"x" * 1000 and never["r"] == b"plain"
    assert dict(never.range()) == {"r": b"plain", "z": b"x" * 1000}
    assert never.get_many(["r", "nope"]) == {"r": b"plain"}


@pytest.mark.parametrize("stored", [b"Znot zlib at all", b"Qunknown marker", b""])
def test_corrupt_compressed_values_raise_corrupt_value(zipped, stored):
    backend, layer = zipped
    backend["bad"] = stored
    with pytest.raises(CorruptValue) as info:
        layer["bad"]
    assert info.value.key == "bad"


def test_a_compression_level_outside_zlib_range_is_refused():
    with pytest.raises(ValueError):
        ZlibCompression(MemoryBackend(), level=10)


# -- encryption ----------------------------------------------------------------------
@pytest.fixture
def sealed():
    backend = MemoryBackend()
    return backend, AESGCMEncryption(backend, key=KEY)


def test_encrypted_values_round_trip(sealed):
    _, layer = sealed
    for value in (b"", b"secret invoice", os.urandom(10_000)):
        layer["k"] = value
        assert layer["k"] == value
    assert dict(layer.range()) == {"k": value}


def test_values_are_unreadable_in_the_backend(sealed):
    backend, layer = sealed
    layer["k"] = b"customer-00042 owes 17.00"
    stored = backend["k"]
    assert b"customer" not in stored and b"17.00" not in stored
    layer["k2"] = b"customer-00042 owes 17.00"
    assert backend["k2"] != stored                  # a fresh nonce per write


def test_the_key_may_be_given_in_base64(sealed):
    backend, layer = sealed
    layer["k"] = b"v"
    again = AESGCMEncryption(backend, key=base64.b64encode(bytes.fromhex(KEY)).decode())
    assert again["k"] == b"v"


def test_a_wrong_key_is_a_decryption_error(sealed):
    backend, layer = sealed
    layer["k"] = b"secret"
    with pytest.raises(DecryptionError):
        AESGCMEncryption(backend, key=OTHER_KEY)["k"]


@pytest.mark.parametrize("key", [None, "", "abcd", "00" * 16, "zz" * 32])
def test_a_missing_or_short_key_is_a_configuration_error(key):
    with pytest.raises(ConfigurationError) as info:
        AESGCMEncryption(MemoryBackend(), key=key)
    assert info.value.key == "encryption_key"


def test_a_value_moved_to_another_key_does_not_decrypt(sealed):
    backend, layer = sealed
    layer["alice"] = b"balance 10"
    backend["bob"] = backend["alice"]
    with pytest.raises(DecryptionError) as info:
        layer["bob"]
    assert info.value.key == "bob"


@pytest.mark.parametrize("position", [0, 1, 14, -1])
def test_a_tampered_byte_is_a_decryption_error(sealed, position):
    backend, layer = sealed
    layer["k"] = b"balance 10"
    stored = bytearray(backend["k"])
    stored[position] ^= 0x01
    backend["k"] = bytes(stored)
    with pytest.raises(DecryptionError):
        layer["k"]


def test_plain_values_under_encryption_are_a_decryption_error(sealed):
    backend, layer = sealed
    backend["old"] = b"written before encryption was turned on"
    with pytest.raises(DecryptionError):
        layer["old"]


# -- serialization -------------------------------------------------------------------
@pytest.fixture
def json_layer():
    backend = MemoryBackend()
    return backend, JSONSerializer(backend)


def test_a_doc_and_its_meta_round_trip(json_layer):
    _, layer = json_layer
    tree = RevTree.from_path(2, ["abc", "def"])
    tree.merge(2, ["aaa", "def"])
    meta = Meta(rev="2-abc", seq=7, timestamp=1700000000.25, deleted=False, tree=tree,
                revisions=["abc", "def"], conflicts=["2-aaa"])     # not stored: the tree says
    layer["d"] = Doc({"a": [1, 2.5, None, True], "ü": {"nested": "ok"}}, meta)
    got = layer["d"]
    assert isinstance(got, Doc)
    assert got == {"a": [1, 2.5, None, True], "ü": {"nested": "ok"}}
    assert (got.meta.rev, got.meta.seq, got.meta.timestamp, got.meta.tree) == (
        "2-abc", 7, 1700000000.25, tree)
    assert got.meta.revisions == [] and got.meta.conflicts == []


def test_plain_json_values_round_trip_as_plain_values(json_layer):
    _, layer = json_layer
    for value in ({"seq": 3}, [1, "two"], "text", 42, None):
        layer["v"] = value
        assert layer["v"] == value and not isinstance(layer["v"], Doc)


@pytest.mark.parametrize("value", [object(), {"when": {1, 2}}, Doc({"x": b"bytes"})])
def test_a_value_json_cannot_hold_is_a_bad_request(json_layer, value):
    backend, layer = json_layer
    with pytest.raises(BadRequest):
        layer["k"] = value
    assert "k" not in backend


@pytest.mark.parametrize("stored", [b"D{not json", b"Jnot json", b"Xwhat", b"", b"D[1]",
                                    b'D[{"bogus": 1}, {}]', b'D[{}, "ab"]'])
def test_corrupt_serialized_values_raise_corrupt_value(json_layer, stored):
    backend, layer = json_layer
    backend["bad"] = stored
    with pytest.raises(CorruptValue) as info:
        layer["bad"]
    assert info.value.key == "bad"


# -- validation ----------------------------------------------------------------------
class ConvertingSchema(formencode.Schema):
    """A form-style schema: converts text to numbers and drops fields it does not name."""

    allow_extra_fields = True
    filter_extra_fields = True
    count = formencode.validators.Int()


def test_validation_stores_the_document_as_written_not_as_converted():
    below: dict = {}
    layer = Validation(below, ConvertingSchema)
    layer["d"] = {"_id": "d", "count": "5", "note": "kept"}
    assert below["d"] == {"_id": "d", "count": "5", "note": "kept"}
    assert isinstance(below["d"], Doc)


def test_validation_names_every_bad_field_by_its_dotted_path():
    layer = Validation({}, InvoiceSchema)
    with pytest.raises(ValidationFailed) as info:
        layer["inv"] = {"_id": "inv", "_rev": "1-x",
                        "payments": [{"type": "VISA", "amount": 1}, {"type": 7, "amount": 1}],
                        "lineItems": [{"description": "ok", "amount": "17",
                                       "allocation": {"c1": {"amount": 1, "paid": None}}}]}
    assert info.value.errors == {
        "payments.1.type": "must be a string, not a number",
        "lineItems.0.amount": "must be a number, not a string",
        "lineItems.0.allocation.c1.paid": "must be a number, not null"}
    assert "lineItems.0.amount" in str(info.value)


def test_tombstones_design_and_local_documents_are_not_validated():
    below: dict = {}
    layer = Validation(below, InvoiceSchema)
    layer["gone"] = {"_deleted": True}
    layer["_design/v"] = {"views": {}}
    layer["_local/cp"] = {"seq": 1}
    del layer["gone2"]
    assert set(below) == {"gone", "_design/v", "_local/cp", "gone2"}
    assert below["gone2"].meta.deleted


@pytest.mark.parametrize("path", ["no colon", "settee.store.nosuch:X",
                                  "settee.store.layers.schemas:NoSuchSchema",
                                  "settee.store.layers.schemas:formencode", ":X"])
def test_a_bad_schema_path_fails_naming_the_setting(path):
    settings = load_settings(env={}, validation_schemas={"db": path})
    with pytest.raises(ConfigurationError) as info:
        validation_layer({}, settings, "db")
    assert info.value.key == "validation_schemas"


def test_a_database_without_a_schema_gets_no_validation_layer():
    settings = load_settings(env={})
    assert validation_layer({}, settings, "other") is None
    assert validation_layer({}, settings, "invoices") is None      # the demo is off
    demo = load_settings(env={"SETTEE_EXAMPLES": "invoices"})
    assert validation_layer({}, demo, "other") is None
    assert isinstance(validation_layer({}, demo, "invoices"), Validation)
    assert "settee.examples.invoices" in demo["views_modules"]


def test_an_unknown_example_fails_at_start_naming_the_setting():
    with pytest.raises(ConfigurationError) as info:
        load_settings(env={"SETTEE_EXAMPLES": "nonesuch"})
    assert info.value.key == "examples"


# -- settings ------------------------------------------------------------------------
def test_defaults_apply_without_file_or_environment():
    settings = load_settings(env={})
    assert settings["storage_backend"] == "sqlite"
    assert settings["compression_level"] == 1
    assert "versioning" in settings["storage_stack"]


def test_a_settings_file_overrides_defaults_flat_or_by_component(tmp_path):
    path = tmp_path / "settee.toml"
    path.write_text('compression_level = 3\n[storage]\nbackend = "memory"\n'
                    'stack = ["versioning", "serialization"]\n')
    settings = load_settings(str(path), env={})
    assert settings["compression_level"] == 3
    assert settings["storage_backend"] == "memory"
    assert settings["storage_stack"] == ["versioning", "serialization"]


def test_the_environment_overrides_the_file_and_overrides_win(tmp_path):
    path = tmp_path / "settee.toml"
    path.write_text('compression_level = 3\nstorage_backend = "memory"\n')
    env = {"SETTEE_CONFIG": str(path), "SETTEE_COMPRESSION_LEVEL": "4",
           "SETTEE_DATA_DIR": "/srv/settee", "SETTEE_STACK": "versioning, serialization",
           "SETTEE_VALIDATION_SCHEMAS": "invoices=a.b:C, bills=d:E"}
    settings = load_settings(env=env, compression_level=5)
    assert settings["compression_level"] == 5
    assert settings["storage_backend"] == "memory"
    assert settings["storage_data_dir"] == "/srv/settee"
    assert settings["storage_stack"] == ["versioning", "serialization"]
    assert settings["validation_schemas"] == {"invoices": "a.b:C", "bills": "d:E"}


@pytest.mark.parametrize("env, key", [
    ({"SETTEE_COMPRESSION_LEVEL": "11"}, "compression_level"),
    ({"SETTEE_COMPRESSION_LEVEL": "six"}, "compression_level"),
    ({"SETTEE_FOO": "1"}, "SETTEE_FOO"),
    ({"SETTEE_SERVER_BIND": "nowhere"}, "server_bind"),
    ({"SETTEE_REPLICATION_INTERVAL": "0"}, "replication_interval"),
])
def test_a_bad_environment_value_fails_naming_the_key(env, key):
    with pytest.raises(ConfigurationError) as info:
        load_settings(env=env)
    assert info.value.key == key
    assert key in str(info.value)


def test_an_unknown_key_in_the_file_fails_naming_it(tmp_path):
    path = tmp_path / "settee.toml"
    path.write_text("[storage]\nbakend = 'sqlite'\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings(str(path), env={})
    assert info.value.key == "storage_bakend"


def test_an_unreadable_settings_file_fails_naming_it(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        load_settings(str(tmp_path / "missing.toml"), env={})
    assert info.value.key == "SETTEE_CONFIG"


@pytest.mark.parametrize("stack", [
    ["versioning", "timestamps", "serialization"],      # a document layer below versioning
    ["versioning", "compression", "serialization"],     # a bytes layer above serialization
    ["versioning", "serialization", "gzip"],            # unknown
    ["timestamps"],                                     # no versioning
    ["versioning", "serialization", "compression", "compression"],
])
def test_a_bad_storage_stack_fails_naming_the_key(stack):
    with pytest.raises(ConfigurationError) as info:
        check_stack(stack)
    assert info.value.key == "storage_stack"


def test_a_bad_storage_stack_fails_when_the_catalog_starts(tmp_path):
    settings = load_settings(env={}, storage_data_dir=str(tmp_path),
                             storage_stack=["versioning", "compression", "serialization"])
    with pytest.raises(ConfigurationError) as info:
        Catalog(settings)
    assert info.value.key == "storage_stack"


def test_lz4_and_zlib_values_read_back_whatever_the_current_setting():
    from settee.store.layers.compression import Compression
    backend = MemoryBackend()
    text = b"the quick brown fox jumps over the lazy dog " * 20
    Compression(backend, "lz4")["a"] = text
    Compression(backend, "zlib", 6)["b"] = text
    assert backend["a"][:1] == b"L" and backend["b"][:1] == b"Z"
    for reader in (Compression(backend, "lz4"), Compression(backend, "zlib", 9)):
        assert reader["a"] == text and reader["b"] == text
    backend["bad"] = b"L" + b"\xff" * 40
    with pytest.raises(CorruptValue):
        Compression(backend)["bad"]
    with pytest.raises(ValueError):
        Compression(backend, "brotli")


def test_a_full_setting_name_wins_over_its_short_alias():
    env = {"SETTEE_SERVER_BIND": "127.0.0.1:7000", "SETTEE_BIND": "127.0.0.1:6000"}
    assert load_settings(env=env)["server_bind"] == "127.0.0.1:7000"
    assert load_settings(env=dict(reversed(env.items())))["server_bind"] == "127.0.0.1:7000"


def test_backends_are_checked_against_the_registry_where_the_store_opens(tmp_path):
    settings = load_settings(env={"SETTEE_STORAGE_BACKEND": "floppy"},
                             storage_data_dir=str(tmp_path / "data"))
    with pytest.raises(ConfigurationError) as info:
        Catalog(settings)
    assert info.value.key == "storage_backend" and "sqlite" in str(info.value)


def test_a_registered_backend_is_accepted(tmp_path, monkeypatch):
    from settee.store import stack
    from settee.store.backends.memory import MemoryBackend
    monkeypatch.setitem(stack.BACKENDS, "mine", lambda settings, db: MemoryBackend())
    settings = load_settings(env={"SETTEE_STORAGE_BACKEND": "mine"},
                             storage_data_dir=str(tmp_path / "data"))
    db = Catalog(settings).create("db")
    db["a"] = {"n": 1}
    assert db["a"]["n"] == 1


def test_a_registered_layer_declares_its_own_settings(tmp_path):
    """A third-party layer's settings come with its registration: read from the file
    and the environment, checked like the built-in ones, handed to its factory."""
    from settee.config.settings import DEFAULTS, Setting
    from settee.store.stack import LAYERS, build_stack, register_layer

    seen = {}

    def factory(inner, settings, db):
        seen["suffix"], seen["times"] = settings["shout_suffix"], settings["shout_times"]
        return None

    register_layer("shout", "document", factory, settings=[
        Setting("shout_suffix", "!", str, "appended to every title"),
        Setting("shout_times", 1, int, "how many times", range=(1, 5))])
    try:
        path = tmp_path / "settee.toml"
        path.write_text('[shout]\nsuffix = "!!"\n')
        settings = load_settings(str(path), env={"SETTEE_SHOUT_TIMES": "3"},
                                 storage_stack=["shout", "versioning", "serialization"])
        build_stack(MemoryBackend(), settings, "db")
        assert seen == {"suffix": "!!", "times": 3}
        with pytest.raises(ConfigurationError, match="shout_times"):
            load_settings(env={"SETTEE_SHOUT_TIMES": "9"})
    finally:
        LAYERS.pop("shout")
        DEFAULTS.pop("shout_suffix")
        DEFAULTS.pop("shout_times")


def test_a_setting_declared_twice_differently_is_refused():
    from settee.config.settings import Setting, declare
    declare(Setting("compression_min_size", 128, int,
                    "values shorter than this are stored as is"))          # the same: fine
    with pytest.raises(ValueError, match="declared twice"):
        declare(Setting("compression_min_size", 64, int, "something else"))


def test_a_choice_is_read_in_any_case_and_kept_in_its_own_spelling():
    settings = load_settings(env={"SETTEE_SQLITE_SYNCHRONOUS": "normal",
                                  "SETTEE_COMPRESSION_ALGORITHM": "ZLIB"})
    assert settings["sqlite_synchronous"] == "NORMAL"
    assert settings["compression_algorithm"] == "zlib"
