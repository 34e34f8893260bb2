-- The distinct User-Agent headers, parsed by the loader with ua-parser (ingestion/user_agents.py).
-- Join on user_agent_md5 = md5(user_agent)::uuid.
select
    user_agent_md5,
    user_agent,
    browser_family,
    browser_version,
    os_family,
    os_version,
    device_family,
    device_brand,
    device_model,
    is_bot,
    parser

from {{ source('raw', 'user_agents') }}
