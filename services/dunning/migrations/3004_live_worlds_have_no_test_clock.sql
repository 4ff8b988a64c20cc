-- Test clocks belong to test worlds (tenant id ending in _test). A clock set before the modes
-- existed sits under the bare id, the live world, where no key can move or delete it any more and
-- it would freeze live dunning: drop those, so the live world runs on real time.
DELETE FROM test_clocks WHERE tenant_id NOT LIKE '%\_test';
