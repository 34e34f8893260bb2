-- Which person each device belongs to, and when. The identity rules (the same words as
-- retrolytics/semantics/funnels.py): a device's identify events, in order of time then event_id, each
-- start a period in which the device belongs to that user, until an identify of a different
-- user; the first period reaches back to the device's first event (valid_from = -infinity).
-- Devices never identified have no row: each is a person of its own, 'device:<anonymous_id>'.
with

identifies as (

    select * from {{ ref('int_identify_events') }}

),

ordered as (

    select
        anonymous_id,
        user_id,
        occurred_at,
        lag(user_id) over device_history as previous_user_id,
        row_number() over device_history as position

    from identifies
    window device_history as (partition by anonymous_id order by occurred_at, event_id)

),

-- A new period starts where the user changes; repeated identifies of one user continue it.
starts as (

    select anonymous_id, user_id, occurred_at, position
    from ordered
    where previous_user_id is distinct from user_id

),

periods as (

    select
        anonymous_id,
        user_id,
        'user:' || user_id as person_id,
        occurred_at as identified_at,
        case
            when position = min(position) over device then '-infinity'::timestamptz
            else occurred_at
        end as valid_from,
        coalesce(
            lead(occurred_at) over (partition by anonymous_id order by position),
            'infinity'::timestamptz
        ) as valid_until

    from starts
    window device as (partition by anonymous_id)

)

select * from periods
