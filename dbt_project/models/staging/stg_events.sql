with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        -- ids
        event_id,
        anonymous_id,
        user_id,
        session_id,

        -- what happened
        type,
        name,

        -- where
        page_url,
        page_path,
        page_title,
        referrer,

        -- on which element (element events only)
        target_tag,
        target_id,
        target_text,
        target_href,
        hierarchy,

        -- free-form
        properties,
        context,

        -- when
        occurred_at,
        received_at,
        loaded_at

    from source

)

select * from renamed
