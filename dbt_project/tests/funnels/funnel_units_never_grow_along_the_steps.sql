-- A unit counted at step k reached every step before it: units never grow along a funnel.
select funnel_name, period, period_start, breakdown_value, step_number, units, previous_units
from (
    select
        *,
        lag(units) over (
            partition by funnel_name, period, period_start, breakdown_value
            order by step_number
        ) as previous_units
    from {{ ref('mart_funnel_conversion') }}
) as steps
where units > previous_units or entries < units
