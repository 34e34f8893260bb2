{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='identity_rules',
        hash_column='content_hash',
        versions_model='int_identity_rules',
        indexes=[{'columns': ['occurred_at']}, {'columns': ['anonymous_id', 'occurred_at']}],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_identity_rules') }}
-- The identify events (device -> user), kept per partition window like defined_events, so the
-- identity model never scans all raw events again.
-- Indexed by time and by device and time: a windowed plan (int_sessions_plan,
-- int_retention_plan) reads the window's identifies and each one's device's last before it.

with

rules as (

    select
        versions.identity_rules,
        versions.content_hash,
        {{ retro_rederive('versions.identity_rules', 'versions.content_hash') }}
            as over_all_history

    from {{ ref('int_identity_rules') }} as versions

),

identifies as (

    select anonymous_id, event_id, occurred_at, user_id, properties as traits
    from {{ ref('stg_events') }}
    where type = 'identify' and user_id is not null

),

final as (

    select
        identifies.anonymous_id,
        identifies.event_id,
        identifies.occurred_at,
        identifies.user_id,
        identifies.traits,
        rules.identity_rules,
        rules.content_hash,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from identifies
    cross join rules
    where rules.over_all_history or {{ retro_in_window('identifies.occurred_at') }}

)

select * from final
