-- The version of the identity rules, in the shape the distributed_incremental materialization
-- compares with its ledger: change `content_hash` when the rules below change, and the next run
-- re-derives int_identify_events over all history.
select
    'identify'::text as identity_rules,
    'identify-v1'::text as content_hash
