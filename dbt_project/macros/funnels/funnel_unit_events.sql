{#-
    funnel_unit_events(unit): a subquery of every event matching a step or an exclusion of the
    funnels of one unit ('device' or 'user'), with the unit it counts for.

    Written once for int_funnel_step_events (both units) and for fct_funnel_entries, which reads
    each unit separately. For `unit: device` the unit is the anonymous_id column itself, not an
    expression: Citus then sees that the facts are computed per distribution value and runs the
    whole INSERT ... SELECT on the shards. Persons (`unit: user`) span devices and so shards.
    No CTE: the funnel steps are read in each branch, so nothing here is referenced twice.
-#}
{% macro funnel_unit_events(unit) -%}
    {%- if unit not in ('device', 'user') -%}
        {{ exceptions.raise_compiler_error("funnel_unit_events: unit must be 'device' or 'user', got " ~ unit) }}
    {%- endif -%}
    (
        select
            matched.funnel_name,
            matched.role,
            matched.position,
            matched.anonymous_id,
            matched.event_id,
            matched.occurred_at,
            {% if unit == 'device' -%}
            matched.anonymous_id as unit_id
            {%- else -%}
            coalesce(persons.person_id, 'device:' || matched.anonymous_id) as unit_id
            {%- endif %}

        from (

            select
                steps.funnel_name,
                steps.role,
                steps.position,
                defined.anonymous_id,
                defined.event_id,
                defined.occurred_at

            from {{ ref('defined_events') }} as defined
            inner join {{ ref('stg_funnel_steps') }} as steps
                on steps.definition_name = defined.definition_name

            union all

            select
                steps.funnel_name,
                steps.role,
                steps.position,
                events.anonymous_id,
                events.event_id,
                events.occurred_at

            from {{ ref('stg_events') }} as events
            inner join {{ ref('stg_funnel_steps') }} as steps
                on steps.event_type = events.type
                and (steps.event_name is null or steps.event_name = events.name)

        ) as matched
        inner join {{ ref('stg_funnels') }} as funnels
            on funnels.funnel_name = matched.funnel_name
        {% if unit == 'user' -%}
        left join {{ ref('int_device_persons') }} as persons
            on persons.anonymous_id = matched.anonymous_id
            and matched.occurred_at >= persons.valid_from
            and matched.occurred_at < persons.valid_until
        {% endif -%}
        where funnels.unit = '{{ unit }}'
    )
{%- endmacro %}
