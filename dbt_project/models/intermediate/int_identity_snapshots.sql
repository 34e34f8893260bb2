{{
    config(
        materialized='distributed_table',
        append=true,
        indexes=[{'columns': ['recorded_at']}],
    )
}}
-- The identity snapshot: each state of a device's identity periods (int_device_persons) that a
-- run saw, a new row whenever it changed. The funnel plan recomputes, from the beginning, the
-- persons of devices whose state changed since the user funnels were last derived: the
-- persons the device belonged to before and belongs to now, and the device on its own.

with

periods as (

    select * from {{ ref('int_device_persons') }}

),

current_state as (

    select
        anonymous_id,
        string_agg(
            person_id || '@' || extract(epoch from valid_from)::text, ',' order by valid_from
        ) as periods,
        array_agg(distinct person_id order by person_id) as person_ids

    from periods
    group by anonymous_id

),

{% if distributed_table_exists() %}
recorded as (

    select distinct on (anonymous_id) anonymous_id, periods, person_ids
    from {{ this }}
    order by anonymous_id, recorded_at desc

),
{% else %}
recorded as (

    select null::text as anonymous_id, null::text as periods, null::text[] as person_ids
    where false

),
{% endif %}

final as (

    select
        current_state.anonymous_id,
        current_state.periods,
        current_state.person_ids,
        coalesce(recorded.person_ids, '{}') as previous_person_ids,
        now() as recorded_at,
        '{{ invocation_id }}'::text as invocation_id

    from current_state
    left join recorded on recorded.anonymous_id = current_state.anonymous_id
    where recorded.periods is distinct from current_state.periods

)

select * from final
