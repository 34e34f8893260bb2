-- One row per retention and its version: the declaration's own hash combined with the hashes
-- of the event definitions it reads, so editing a definition re-derives the retention analyses
-- that use it (as int_funnel_versions does for funnels). int_retention_events and
-- fct_retention_activity compare these with their ledgers.
with

retentions as (

    select * from {{ ref('stg_retentions') }}

),

definitions_read as (

    select distinct
        retentions.retention_name,
        read.definition_name,
        coalesce(definitions.content_hash, 'missing') as definition_hash

    from retentions
    cross join lateral (
        values (retentions.start_definition), (retentions.return_definition)
    ) as read (definition_name)
    left join {{ ref('int_event_definition_versions') }} as definitions
        on definitions.definition_name = read.definition_name
    where read.definition_name is not null

),

final as (

    select
        retentions.retention_name,
        left(md5(
            retentions.content_hash || '|' || coalesce(string_agg(
                definitions_read.definition_name || '=' || definitions_read.definition_hash,
                ',' order by definitions_read.definition_name collate "C"
            ), '')
        ), 16) as content_hash

    from retentions
    left join definitions_read on definitions_read.retention_name = retentions.retention_name
    group by retentions.retention_name, retentions.content_hash

)

select * from final
