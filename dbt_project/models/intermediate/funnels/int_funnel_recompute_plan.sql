{{
    config(
        materialized='distributed_table',
        distributed_by='unit_id',
        indexes=[{'columns': ['unit_id', 'funnel_name']}],
        post_hook=after_commit('analyze {{ this }}'),
    )
}}
-- depends_on: {{ ref('int_funnel_step_events') }}
-- depends_on: {{ ref('int_identity_snapshots') }}
-- The recompute plan of a windowed run [start - lookback_hours, end): which units of which
-- funnels the attempts models recompute, and from where. An attempt depends on the ones before
-- it (a unit enters again only after the previous attempt ended), so a unit is recomputed from
-- its first attempt that could change, not just over the window:
--   - late or new events: units with step events in the window, from the window start. Their
--     attempts that ended at or after it are replaced, the walk resuming at the first one's
--     entry (attempts of a unit end in stream order, so these are its tail);
--   - changed identities: persons whose devices' identity periods changed since the user
--     funnels were last derived (int_identity_snapshots), from the beginning.
-- New and edited funnels are not planned: the attempts models derive them over all history
-- (their ledger says which). Without a window a run recomputes everything: the plan is empty.
{%- set window = retro_window() %}
{%- set previous = [] %}
{%- for unit in ['device', 'user'] %}
    {%- set relation = funnel_attempts_relation(unit) %}
    {%- if relation is not none %}{% do previous.append(relation) %}{% endif %}
{%- endfor %}
{%- set user_facts = funnel_attempts_relation('user') %}

with

funnels as (

    select funnel_name, unit from {{ ref('stg_funnels') }}

),

persons as (

    select * from {{ ref('int_device_persons') }}

),

{% if window is not none %}
touched as (

    select distinct
        step_events.funnel_name,
        step_events.unit,
        case
            when step_events.unit = 'device' then step_events.anonymous_id
            else coalesce(persons.person_id, 'device:' || step_events.anonymous_id)
        end as unit_id,
        'events in the window' as reason,
        '{{ window.since }}'::timestamptz as recompute_from

    from {{ ref('int_funnel_step_events') }} as step_events
    left join persons
        on step_events.unit = 'user'
        and persons.anonymous_id = step_events.anonymous_id
        and step_events.occurred_at >= persons.valid_from
        and step_events.occurred_at < persons.valid_until
    where {{ retro_in_window('step_events.occurred_at') }}

),

identity_changes as (

    select anonymous_id, person_ids, previous_person_ids
    from {{ ref('int_identity_snapshots') }}
    {% if user_facts is not none %}
    where recorded_at > (
        select coalesce(max(derived_at), '-infinity')
        from {{ retro_ledger_relation(user_facts) }}
    )
    {% endif %}

),

moved as (

    select distinct
        funnels.funnel_name,
        funnels.unit,
        moved_persons.unit_id,
        'identity changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from funnels
    cross join (
        select unnest(person_ids || previous_person_ids || ('device:' || anonymous_id)) as unit_id
        from identity_changes
    ) as moved_persons
    where funnels.unit = 'user'

),

-- A unit planned for both reasons is recomputed from the earlier point.
units as (

    select distinct on (funnel_name, unit_id) *
    from (select * from touched union all select * from moved) as reasons
    order by funnel_name, unit_id, recompute_from

),
{% else %}
units as (

    select
        null::text as funnel_name,
        null::text as unit,
        null::text as unit_id,
        null::text as reason,
        null::timestamptz as recompute_from
    where false

),
{% endif %}

previous_attempts as (

    {% for relation in previous %}
    select funnel_name, unit_id, attempt_number, entered_at, entry_step, entry_event_id,
        anonymous_id, entry_day, ended_at
    from {{ relation }}
    {% if not loop.last %}union all{% endif %}
    {% else %}
    select null::text as funnel_name, null::text as unit_id, null::integer as attempt_number,
        null::timestamptz as entered_at, null::integer as entry_step, null::uuid as entry_event_id,
        null::text as anonymous_id, null::date as entry_day, null::timestamptz as ended_at
    where false
    {% endfor %}

),

-- Each planned unit's attempts: kept (ended before the point) or replaced.
unit_attempts as (

    select
        units.*,
        facts.attempt_number,
        facts.entered_at,
        facts.entry_step,
        facts.entry_event_id,
        facts.anonymous_id,
        facts.entry_day,
        facts.ended_at >= units.recompute_from as replaced

    from units
    left join previous_attempts as facts
        on facts.funnel_name = units.funnel_name
        and facts.unit_id = units.unit_id

),

summary as (

    select
        funnel_name,
        unit,
        unit_id,
        reason,
        recompute_from,
        min(attempt_number) filter (where replaced) as first_replaced_number,
        coalesce(max(attempt_number) filter (where not replaced), 0) as kept_attempts,
        coalesce(array_agg(distinct entry_day) filter (where replaced), '{}') as replaced_entry_days

    from unit_attempts
    group by funnel_name, unit, unit_id, reason, recompute_from

),

-- The walk resumes at the first replaced attempt's entry if it entered before the point, else
-- at the point itself; attempts are numbered on from there.
final as (

    select
        summary.funnel_name,
        summary.unit,
        summary.unit_id,
        summary.reason,
        summary.recompute_from,
        case when first_replaced.entered_at < summary.recompute_from
            then first_replaced.entered_at else summary.recompute_from end as resume_at,
        case when first_replaced.entered_at < summary.recompute_from
            then first_replaced.entry_step else 0 end as resume_step,
        case when first_replaced.entered_at < summary.recompute_from
            then first_replaced.entry_event_id
            else '00000000-0000-0000-0000-000000000000'::uuid end as resume_event_id,
        case when first_replaced.entered_at < summary.recompute_from
            then first_replaced.anonymous_id else '' end as resume_anonymous_id,
        coalesce(summary.first_replaced_number, summary.kept_attempts + 1) as first_attempt,
        summary.replaced_entry_days

    from summary
    left join unit_attempts as first_replaced
        on first_replaced.funnel_name = summary.funnel_name
        and first_replaced.unit_id = summary.unit_id
        and first_replaced.attempt_number = summary.first_replaced_number

)

select * from final
