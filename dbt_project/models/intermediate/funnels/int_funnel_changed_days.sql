-- The (funnel, entry day) pairs a windowed run changed in the funnel facts: the days of
-- int_funnel_changed_attempts. The conversion mart recomputes their day, week and month.
select distinct funnel_name, entry_day
from {{ ref('int_funnel_changed_attempts') }}
