-- One row per current event definition and its content hash: the versions that
-- `defined_events` compares with its ledger to find new, changed and removed definitions.
with

conditions as (

    select * from {{ ref('stg_event_definitions') }}

),

versions as (

    select
        definition_name,
        content_hash,
        min(description) as description,
        min(owner) as owner,
        count(*) as condition_count

    from conditions
    group by definition_name, content_hash

)

select * from versions
