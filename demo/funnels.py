"""The demo's funnel tables: per shipped funnel, its declared options and, per step over all
history, the units that reached it, those still in progress and the median time from the
previous step."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from demo.tables import print_table
from retrolytics.language.funnels import Funnel

# Per funnel and step k, over all history, from the facts: units with an attempt (not excluded)
# that filled at least k steps; of them, units whose attempt is still in progress; the median
# over those attempts of the time from step k-1 to step k (ordered and strict funnels only: an
# unordered funnel's steps have no order to measure between). Excluded attempts, counted apart.
FUNNEL_STEPS = """
select s.funnel_name, s.position,
       case when f.order_mode = 'unordered'
            then format('any %s of %s steps', s.position, f.step_count)
            else s.label end,
       count(distinct e.unit_id) filter (where e.furthest_step >= s.position),
       count(distinct e.unit_id) filter (
           where e.furthest_step >= s.position and e.outcome = 'in_progress'),
       percentile_cont(0.5) within group (
           order by extract(epoch from
               e.step_reached_at[s.position] - e.step_reached_at[s.position - 1]))
           filter (where f.order_mode <> 'unordered' and s.position > 1
                   and e.step_reached_at[s.position] is not null)
from staging.stg_funnel_steps s
join staging.stg_funnels f using (funnel_name)
join marts.fct_funnel_entries e
  on e.funnel_name = s.funnel_name and e.outcome <> 'excluded'
where s.role = 'step'
group by 1, 2, 3
order by 1, 2
"""
EXCLUDED = """
select funnel_name, count(*) from marts.fct_funnel_entries
where outcome = 'excluded' group by 1
"""


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def show_funnels(database_url: str, funnels: Sequence[Funnel]) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(FUNNEL_STEPS).fetchall()
        excluded = dict(conn.execute(EXCLUDED).fetchall())
    steps: dict[str, list[tuple]] = {}
    for name, position, label, units, in_progress, median in rows:
        steps.setdefault(name, []).append((position, label, units, in_progress, median))
    for funnel in sorted(funnels, key=lambda f: f.name):
        found = steps.get(funnel.name, [])
        entered = (found[0][2] if found else 0) or 1
        table = [
            (position, label, units, f"{100 * units / entered:.1f}%", progress, _seconds(median))
            for position, label, units, progress, median in found
        ]
        title = f"funnel {funnel.name}: {funnel.options_label}"
        if funnel.exclusions:
            title += f"; {excluded.get(funnel.name, 0)} attempts excluded"
        header = ("step", "name", "units", "of entered", "in progress", "median from previous")
        print_table(title, header, table)
