{{ config(materialized='view') }}
-- Funnel facts: one row per unit per attempt at a funnel, device, user and session funnels
-- together. A view over the three attempts tables, which differ only in what a unit is.
select * from {{ ref('fct_funnel_entries_device') }}
union all
select * from {{ ref('fct_funnel_entries_user') }}
union all
select * from {{ ref('fct_funnel_entries_session') }}
