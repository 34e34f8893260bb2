-- One row per path analysis and its version: the declaration's own hash combined with the
-- hashes of the event definitions it reads (anchor, steps, exclusions), and, for `gap: session`,
-- the sessionization rules' hash. fct_paths compares these with its ledger: a changed version
-- is re-derived over all history.
with

definitions_read as (

    select distinct
        nodes.path_name,
        nodes.definition_name,
        coalesce(definitions.content_hash, 'missing') as definition_hash

    from {{ ref('stg_path_nodes') }} as nodes
    left join {{ ref('int_event_definition_versions') }} as definitions
        on definitions.definition_name = nodes.definition_name
    where nodes.definition_name is not null

),

versions as (

    select
        paths.path_name,
        paths.gap_session,
        left(md5(
            paths.content_hash || '|' || coalesce(string_agg(
                definitions_read.definition_name || '=' || definitions_read.definition_hash,
                ',' order by definitions_read.definition_name collate "C"
            ), '')
        ), 16) as content_hash

    from {{ ref('stg_paths') }} as paths
    left join definitions_read on definitions_read.path_name = paths.path_name
    group by paths.path_name, paths.content_hash, paths.gap_session

)

select
    versions.path_name,
    case
        when versions.gap_session
            then left(md5(versions.content_hash || '|sessions=' || rules.content_hash), 16)
        else versions.content_hash
    end as content_hash

from versions
cross join {{ ref('int_session_rules') }} as rules
