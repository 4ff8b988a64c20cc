import time

from shared.auth import generate_key, hash_key
from shared.ids import new_id, ulid


def test_ids_have_prefix_and_sort_by_time():
    first = new_id("inv")
    time.sleep(0.002)
    second = new_id("inv")
    assert first.startswith("inv_") and len(first) == 30
    assert first < second
    assert ulid(0) < ulid(1) < ulid(2**47)


def test_keys_are_random_prefixed_and_hashed():
    key = generate_key("test")
    assert key.startswith("sk_test_") and len(key) > 40
    assert generate_key("live").startswith("sk_live_")
    assert key != generate_key("test")
    assert hash_key(key) == hash_key(key) and key not in hash_key(key) and len(hash_key(key)) == 64
