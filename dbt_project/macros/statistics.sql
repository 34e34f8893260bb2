{#-
    analyze_when_grown(): a post-hook statement (after_commit) that analyzes the model's table
    when its statistics are missing or stale (retrolytics.statistics_stale(), ingestion/schema.py:
    never analyzed, as after a full build, or grown by more than a tenth since; always on Citus).
    Rendered empty otherwise, and dbt then runs nothing. An hourly run of an incremental model
    adds a few rows to a table that grows with history, and an ANALYZE samples up to 30,000 rows
    however few were added, spread over more pages the longer the history (0.2 to 0.4 s a table
    at 90 days of history, benchmarks/RESULTS.md section 4c).
-#}
{% macro analyze_when_grown() -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set stale = run_query(
        "select retrolytics.statistics_stale('" ~ this.include(database=false) ~ "'::regclass)"
        ).columns[0].values()[0] -%}
    {%- if stale -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
