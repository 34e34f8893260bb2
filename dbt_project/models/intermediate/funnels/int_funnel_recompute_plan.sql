{{
    config(
        materialized='distributed_table',
        distributed_by='unit_id',
        indexes=[{'columns': ['unit_id', 'funnel_name']}],
    )
}}
-- depends_on: {{ ref('int_funnel_step_events') }}
-- depends_on: {{ ref('int_identity_snapshots') }}
-- depends_on: {{ ref('int_sessions_plan') }}
-- depends_on: {{ ref('fct_sessions') }}
-- depends_on: {{ ref('int_identify_events') }}
-- The recompute plan of a windowed run [start - lookback_hours, end): which units of which
-- funnels the attempts models recompute, and from where. An attempt depends on the ones before
-- it (a unit enters again only after the previous attempt ended), so a unit is recomputed from
-- its first attempt that could change, not just over the window:
--   - late or new events: units with step events in the window (for a `broken_by: any_event`
--     funnel any event, which its stream holds), from the window start. Their
--     attempts that ended at or after it are replaced, the walk resuming at the first one's
--     entry (attempts of a unit end in stream order, so these are its tail);
--   - changed identities: persons whose devices' identity periods changed since the user
--     funnels were last derived (int_identity_snapshots), from the beginning;
--   - changed sessions (int_sessions_plan: per device, a time range holding every session this
--     run re-derived, merged or split): for `unit: session`, each session of the range as it was
--     (the previous facts) and as it is now (fct_sessions), whole; for a session breakdown, the
--     device's unit from the range's start;
--   - changed traits (identify events in the window): for a person breakdown, the units of the
--     person's devices from the identify on, and an identified device from the beginning;
--   - attempts in progress whose deadline the data has now passed (funnel_data_end()): their
--     units from the attempt's entry, even without new events, so they end `dropped_off`.
-- A unit of an `all_events` funnel is recomputed from the beginning, whatever the reason: its
-- breakdown values are walked apart, so its attempts overlap and have no tail to resume at. So
-- is a unit of an `entries: every_entry` funnel: an attempt's later windows outlive its span
-- and overlap the next attempt's, and its row may have ended (its reported window) before the
-- window while another of its windows is still open. And a unit of a funnel with
-- `exclusion_scope: until_step`: an exclusion after an attempt's deadline (a late event among
-- them) can still disqualify it, however long ago it ended.
-- New and edited funnels are not planned: the attempts models derive them over all history
-- (their ledger says which). Without a window a run recomputes everything: the plan is empty.
{%- set window = retro_window() %}
{%- set previous = [] %}
{%- for unit in ['device', 'user', 'session'] %}
    {%- set relation = funnel_attempts_relation(unit) %}
    {%- if relation is not none %}{% do previous.append(relation) %}{% endif %}
{%- endfor %}
{%- set user_facts = funnel_attempts_relation('user') %}
{%- set session_facts = funnel_attempts_relation('session') %}

with

funnels as (

    select funnel_name, unit, breakdown_session, breakdown_person, attribution, entries,
        exclusion_scope
    from {{ ref('stg_funnels') }}

),

persons as (

    select * from {{ ref('int_device_persons') }}

),

-- Read twice (expired, unit_attempts): not materialized, so each reads only the rows its own
-- filter or join asks for instead of one scan of every attempt ever.
previous_attempts as not materialized (

    {% for relation in previous %}
    select funnel_name, unit_id, attempt_number, entered_at, entry_step, entry_event_id,
        anonymous_id, entry_day, ended_at, outcome
    from {{ relation }}
    {% if not loop.last %}union all{% endif %}
    {% else %}
    select null::text as funnel_name, null::text as unit_id, null::integer as attempt_number,
        null::timestamptz as entered_at, null::integer as entry_step, null::uuid as entry_event_id,
        null::text as anonymous_id, null::date as entry_day, null::timestamptz as ended_at,
        null::text as outcome
    where false
    {% endfor %}

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
        case when step_events.unit = 'device' then step_events.anonymous_id end as device,
        'events in the window' as reason,
        '{{ window.since }}'::timestamptz as recompute_from

    from {{ ref('int_funnel_step_events') }} as step_events
    left join persons
        on step_events.unit = 'user'
        and persons.anonymous_id = step_events.anonymous_id
        and step_events.occurred_at >= persons.valid_from
        and step_events.occurred_at < persons.valid_until
    where {{ retro_in_window('step_events.occurred_at') }}
        -- Session units are planned from the sessions this run changed (below).
        and step_events.unit <> 'session'

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
        null::text as device,
        'identity changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from funnels
    cross join (
        select unnest(person_ids || previous_person_ids || ('device:' || anonymous_id)) as unit_id
        from identity_changes
    ) as moved_persons
    where funnels.unit = 'user'

),

-- Materialized: read by three CTEs (on Citus, an intermediate result any shard can join).
session_changes as materialized (

    select anonymous_id, recompute_from, recompute_until from {{ ref('int_sessions_plan') }}

),

-- The session attempts as the previous run left them (read by device and time: an index).
previous_session_attempts as (

    {% if session_facts is not none -%}
    select funnel_name, unit_id, anonymous_id, entered_at from {{ session_facts }}
    {%- else -%}
    select null::text as funnel_name, null::text as unit_id, null::text as anonymous_id,
        null::timestamptz as entered_at
    where false
    {%- endif %}

),

-- `unit: session`: an attempt never leaves its session, so a changed session is recomputed
-- whole; the sessions it replaced (merged, split) lose their facts.
session_units as (

    select
        funnels.funnel_name,
        funnels.unit,
        facts.unit_id,
        facts.anonymous_id as device,
        'sessions changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from previous_session_attempts as facts
    inner join funnels on funnels.funnel_name = facts.funnel_name
    inner join session_changes as changes
        on changes.anonymous_id = facts.anonymous_id
        and facts.entered_at >= changes.recompute_from
        and facts.entered_at <= changes.recompute_until
    where funnels.unit = 'session'

    union all

    select
        funnels.funnel_name,
        funnels.unit,
        'session:' || sessions.first_event_id as unit_id,
        sessions.anonymous_id as device,
        'sessions changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from funnels
    cross join session_changes as changes
    inner join {{ ref('fct_sessions') }} as sessions
        on sessions.anonymous_id = changes.anonymous_id
        and sessions.session_start >= changes.recompute_from
        and sessions.session_start <= changes.recompute_until
    where funnels.unit = 'session'

),

-- A session breakdown of a device or user funnel: the device's unit, or every person it
-- belonged to, from the start of the changed range. Plain joins (hash joins over the two CTEs):
-- a LATERAL lookup of each changed device's persons scanned the whole persons CTE per device,
-- 4.9 s at 90 days of history even with no such funnel declared.
session_breakdowns as (

    select
        funnels.funnel_name,
        funnels.unit,
        case when funnels.unit = 'device' then changes.anonymous_id else persons_of.unit_id end
            as unit_id,
        case when funnels.unit = 'device' then changes.anonymous_id end as device,
        'sessions changed' as reason,
        changes.recompute_from

    from funnels
    cross join session_changes as changes
    inner join (
        select anonymous_id, person_id as unit_id from persons
        union all
        select anonymous_id, 'device:' || anonymous_id from session_changes
    ) as persons_of
        on persons_of.anonymous_id = changes.anonymous_id
    where funnels.breakdown_session is not null and funnels.unit <> 'session'

),

window_identifies as (

    select anonymous_id, 'user:' || user_id as person_id, occurred_at
    from {{ ref('int_identify_events') }}
    where {{ retro_in_window('occurred_at') }}

),

-- A person breakdown: an identify in the window changes its person's traits from its time on,
-- and may move its device to another person from the device's first event on.
person_breakdowns as (

    select
        funnels.funnel_name,
        funnels.unit,
        changed.person_id as unit_id,
        null::text as device,
        'traits changed' as reason,
        changed.occurred_at as recompute_from

    from funnels
    cross join window_identifies as changed
    where funnels.breakdown_person is not null and funnels.unit = 'user'

    union all

    select
        funnels.funnel_name,
        funnels.unit,
        persons.anonymous_id as unit_id,
        persons.anonymous_id as device,
        'traits changed' as reason,
        changed.occurred_at as recompute_from

    from funnels
    cross join window_identifies as changed
    inner join persons on persons.person_id = changed.person_id
    where funnels.breakdown_person is not null and funnels.unit = 'device'

    union all

    select
        funnels.funnel_name,
        funnels.unit,
        changed.anonymous_id as unit_id,
        changed.anonymous_id as device,
        'identity changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from funnels
    cross join window_identifies as changed
    where funnels.breakdown_person is not null and funnels.unit = 'device'

    union all

    -- (Sessions of the identified device itself are in session_units: int_sessions_plan
    -- redoes a device with an identify in the window whole.)
    select
        funnels.funnel_name,
        funnels.unit,
        'session:' || sessions.first_event_id as unit_id,
        sessions.anonymous_id as device,
        'traits changed' as reason,
        '-infinity'::timestamptz as recompute_from

    from funnels
    cross join window_identifies as changed
    inner join persons on persons.person_id = changed.person_id
    inner join {{ ref('fct_sessions') }} as sessions
        on sessions.anonymous_id = persons.anonymous_id
        and sessions.session_end >= changed.occurred_at
    where funnels.breakdown_person is not null and funnels.unit = 'session'

),

-- In progress until now: the deadline (ended_at) is no longer after the end of the data. The
-- facts' (outcome, ended_at) index reads only the attempts in progress, whose number is bounded
-- by the traffic of one conversion window, not by history.
expired as (

    select
        facts.funnel_name,
        funnels.unit,
        facts.unit_id,
        case when funnels.unit = 'device' then facts.unit_id end as device,
        'deadline passed' as reason,
        facts.entered_at as recompute_from

    from previous_attempts as facts
    inner join funnels on funnels.funnel_name = facts.funnel_name
    where facts.outcome = 'in_progress' and facts.ended_at <= {{ funnel_data_end() }}

),

-- A unit planned for several reasons is recomputed from the earliest point.
units as (

    select distinct on (reasons.funnel_name, reasons.unit_id)
        reasons.funnel_name,
        reasons.unit,
        reasons.unit_id,
        reasons.device,
        reasons.reason,
        case
            when funnels.attribution = 'all_events' or funnels.entries = 'every_entry'
                or funnels.exclusion_scope = 'until_step'
                then '-infinity'::timestamptz
            else reasons.recompute_from
        end as recompute_from
    from (
        select * from touched
        union all
        select * from moved
        union all
        select * from session_units
        union all
        select * from session_breakdowns
        union all
        select * from person_breakdowns
        union all
        select * from expired
    ) as reasons
    inner join funnels on funnels.funnel_name = reasons.funnel_name
    order by reasons.funnel_name, reasons.unit_id, reasons.recompute_from

),
{% else %}
units as (

    select
        null::text as funnel_name,
        null::text as unit,
        null::text as unit_id,
        null::text as device,
        null::text as reason,
        null::timestamptz as recompute_from
    where false

),
{% endif %}

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
        device,
        reason,
        recompute_from,
        min(attempt_number) filter (where replaced) as first_replaced_number,
        coalesce(max(attempt_number) filter (where not replaced), 0) as kept_attempts,
        coalesce(array_agg(distinct entry_day) filter (where replaced), '{}') as replaced_entry_days

    from unit_attempts
    group by funnel_name, unit, unit_id, device, reason, recompute_from

),

-- The walk resumes at the first replaced attempt's entry if it entered before the point, else
-- at the point itself; attempts are numbered on from there.
final as (

    select
        summary.funnel_name,
        summary.unit,
        summary.unit_id,
        summary.device,
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
