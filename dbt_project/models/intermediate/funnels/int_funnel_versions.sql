-- One row per funnel and its version: the funnel's own hash combined with the hashes of the
-- event definitions it reads, so editing a definition re-derives the funnels that use it.
-- fct_funnel_entries compares these with its ledger (fct_funnel_entries__versions). Funnels
-- that read sessions (`unit: session`, a session breakdown) also take the sessionization rules'
-- hash (int_session_rules): a new session timeout re-derives them.
with

funnels as (

    select * from {{ ref('stg_funnels') }}

),

definitions_read as (

    select distinct
        steps.funnel_name,
        steps.definition_name,
        coalesce(definitions.content_hash, 'missing') as definition_hash

    from {{ ref('stg_funnel_steps') }} as steps
    left join {{ ref('int_event_definition_versions') }} as definitions
        on definitions.definition_name = steps.definition_name
    where steps.definition_name is not null

),

versions as (

    select
        funnels.funnel_name,
        funnels.content_hash as funnel_hash,
        funnels.unit = 'session' or funnels.breakdown_session is not null as reads_sessions,
        left(md5(
            funnels.content_hash || '|' || coalesce(string_agg(
                definitions_read.definition_name || '=' || definitions_read.definition_hash,
                ',' order by definitions_read.definition_name collate "C"
            ), '')
        ), 16) as content_hash

    from funnels
    left join definitions_read on definitions_read.funnel_name = funnels.funnel_name
    group by funnels.funnel_name, funnels.content_hash, funnels.unit, funnels.breakdown_session

),

final as (

    select
        versions.funnel_name,
        versions.funnel_hash,
        case
            when versions.reads_sessions
                then left(md5(versions.content_hash || '|sessions=' || rules.content_hash), 16)
            else versions.content_hash
        end as content_hash

    -- Each CTE is read once: Citus cannot push down a view holding a CTE read twice.
    from versions
    cross join {{ ref('int_session_rules') }} as rules

)

select * from final
