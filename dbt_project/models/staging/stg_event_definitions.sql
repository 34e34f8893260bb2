-- The compiled event definitions (the seed `retrolytics definitions compile` writes), one row
-- per condition, with the seed's JSON-encoded texts turned back into text.
with

source as (

    select * from {{ ref('event_definitions') }}

),

decoded as (

    select
        definition_name,
        condition_index,
        content_hash,
        description #>> '{}' as description,
        owner #>> '{}' as owner,

        -- the tests of the condition; NULL means "no test"
        event_types,
        event_name #>> '{}' as event_name,
        selector #>> '{}' as selector,
        selector_regex #>> '{}' as selector_regex,
        selector_literal #>> '{}' as selector_literal,
        text_op,
        text_value #>> '{}' as text_value,
        href_op,
        href_value #>> '{}' as href_value,
        path_op,
        path_value #>> '{}' as path_value,
        url_op,
        url_value #>> '{}' as url_value,
        properties

    from source

)

select * from decoded
