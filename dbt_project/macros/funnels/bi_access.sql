{#-
    The read-only role BI tools use: SELECT on the marts schema and nothing else (no usage on
    raw, staging or intermediate). A role without login: a BI tool logs in as its own user that
    is a member, e.g. `create role metabase login in role retrolytics_bi`.

        dbt run-operation create_bi_role                      # role `retrolytics_bi`
        dbt run-operation create_bi_role --args '{role: bi}'

    Tables created later in the schema (every dbt run recreates some) are covered by the
    default privileges granted here, for tables the running user creates.
-#}
{% macro create_bi_role(role=none) -%}
    {%- set role = role or var('bi_role', 'retrolytics_bi') -%}
    {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]{0,62}', role) -%}
        {{ exceptions.raise_compiler_error(
            "The BI role must be a lower-case PostgreSQL name (letters, digits, _); got '" ~ role ~ "'") }}
    {%- endif -%}
    {%- set schema = generate_schema_name('marts', none) -%}
    {%- call statement('create_bi_role') -%}
        do $$
        begin
            if not exists (select 1 from pg_roles where rolname = '{{ role }}') then
                create role {{ role }} nologin;
            end if;
        end
        $$;
        create schema if not exists {{ schema }};
        grant usage on schema {{ schema }} to {{ role }};
        grant select on all tables in schema {{ schema }} to {{ role }};
        alter default privileges in schema {{ schema }} grant select on tables to {{ role }}
    {%- endcall -%}
    {%- do adapter.commit() -%}
    {{ log("Role " ~ role ~ " can read schema " ~ schema ~ " and nothing else.", info=True) }}
{%- endmacro %}
