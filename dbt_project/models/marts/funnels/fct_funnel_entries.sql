{{
    config(
        materialized='funnel_facts',
        versions_model='int_funnel_versions',
        indexes=[{'columns': ['funnel_name', 'entered_at']}],
    )
}}
-- depends_on: {{ ref('int_funnel_versions') }}
-- depends_on: {{ ref('int_device_persons') }}
-- depends_on: {{ ref('int_funnel_step_events') }}
-- One row per unit per attempt at a funnel. The query is funnel_facts_query()
-- (macros/funnels/funnel_facts_query.sql), one statement per unit: this is the one for
-- `unit: device` funnels; the funnel_facts materialization then inserts the `unit: user` ones.
{{ funnel_facts_query('device') }}
