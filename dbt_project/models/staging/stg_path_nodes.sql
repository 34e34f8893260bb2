-- The anchors, step definitions (with their precedence) and exclusions of the declared paths.
select
    path_name,
    role,
    position,
    definition_name,
    event_type,
    event_name #>> '{}' as event_name

from {{ ref('path_nodes') }}
