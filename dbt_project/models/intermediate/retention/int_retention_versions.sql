-- One row per retention and its version: the declaration's own hash combined with the hashes
-- of the event definitions it reads, so editing a definition re-derives the retention analyses
-- that use it (as int_funnel_versions does for funnels). int_retention_events and
-- fct_retention_activity compare these with their ledgers.
with

retentions as (

    select * from {{ ref('stg_retentions') }}

),

-- The start and the return definition as `name=hash`, by two joins, so that each CTE is read
-- once: a CTE a view reads twice stays a CTE, and Citus plans the statements that read this view
-- apart from the shards (DEVELOPERS.md).
definitions_read as (

    select
        retentions.retention_name,
        retentions.content_hash,
        retentions.start_definition || '=' || coalesce(start_read.content_hash, 'missing')
            as start_entry,
        retentions.return_definition || '=' || coalesce(return_read.content_hash, 'missing')
            as return_entry,
        retentions.return_definition collate "C" < retentions.start_definition collate "C"
            as return_first

    from retentions
    left join {{ ref('int_event_definition_versions') }} as start_read
        on start_read.definition_name = retentions.start_definition
    left join {{ ref('int_event_definition_versions') }} as return_read
        on return_read.definition_name = retentions.return_definition

),

-- Each definition read once, in name order.
final as (

    select
        retention_name,
        left(md5(
            content_hash || '|' || case
                when start_entry = return_entry or return_entry is null
                    then coalesce(start_entry, '')
                when start_entry is null then return_entry
                when return_first then return_entry || ',' || start_entry
                else start_entry || ',' || return_entry
            end
        ), 16) as content_hash

    from definitions_read

)

select * from final
