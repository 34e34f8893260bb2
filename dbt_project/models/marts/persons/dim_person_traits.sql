{{
    config(
        materialized='distributed_table',
        distributed_by='person_id',
        indexes=[{'columns': ['person_id', 'trait', 'valid_from']}],
    )
}}
-- The history of each identified person's traits (slowly changing, type 2), one row per trait
-- and value it held. The rules (and a Python reference) are in retrolytics/semantics/sessions.py:
-- a user's identify events (on any device), in order of occurred_at then event_id, set the
-- traits they carry (their properties object); a trait they do not mention keeps its value.
-- A row starts where an identify sets a trait to a value other than its current one (JSON
-- equality; repeating a value changes nothing) and lasts until the next such change. Read a
-- trait as it was at time t with `valid_from <= t and t < valid_to`. Two identifies at the same
-- instant with different values give the first an empty range (valid_from = valid_to).
with

set_traits as (

    select
        'user:' || identifies.user_id as person_id,
        identifies.user_id,
        identifies.anonymous_id,
        identifies.event_id,
        identifies.occurred_at,
        traits.key as trait,
        traits.value

    from {{ ref('int_identify_events') }} as identifies
    cross join lateral jsonb_each(
        case when jsonb_typeof(identifies.traits) = 'object' then identifies.traits else '{}' end
    ) as traits

),

compared as (

    select
        set_traits.*,
        lag(value) over trait_history as previous_value,
        row_number() over trait_history as position

    from set_traits
    window trait_history as (partition by person_id, trait order by occurred_at, event_id)

),

changes as (

    select *
    from compared
    where position = 1 or previous_value is distinct from value

),

final as (

    select
        person_id,
        user_id,
        trait,
        value,
        occurred_at as valid_from,
        coalesce(
            lead(occurred_at) over (partition by person_id, trait order by occurred_at, event_id),
            'infinity'::timestamptz
        ) as valid_to,
        event_id as set_by_event_id,
        anonymous_id as set_on_device

    from changes

)

select
    *,
    valid_to = 'infinity'::timestamptz as is_current
from final
