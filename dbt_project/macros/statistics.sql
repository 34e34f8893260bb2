{#-
    analyze_when_grown(): a post-hook statement (after_commit) that analyzes the model's table
    when its statistics are missing or stale: never analyzed (a full build), or grown by more
    than a tenth since (its size now against the pages its last ANALYZE or VACUUM counted),
    autovacuum's own threshold for an analyze. Rendered empty otherwise, and dbt then runs
    nothing. An hourly run of an incremental model adds a few rows to a table that grows with
    history, and an ANALYZE samples up to 30,000 rows however few were added, spread over more
    pages the longer the history (0.2 to 0.4 s a table at 90 days of history, benchmarks/RESULTS.md
    section 4c). On Citus the coordinator's table holds no rows to measure: always analyzed.
-#}
{% macro analyze_when_grown() -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set stale = run_query(
        "select retrolytics.citus_enabled() or reltuples < 0"
        ~ " or pg_relation_size(oid) > 1.1 * relpages * current_setting('block_size')::bigint"
        ~ " from pg_class where oid = '" ~ this.include(database=false) ~ "'::regclass").columns[0].values()[0] -%}
    {%- if stale -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
