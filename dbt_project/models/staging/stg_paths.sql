-- The declared path analyses (the `paths` seed), one row each, JSON-encoded texts decoded.
select
    path_name,
    content_hash,
    description #>> '{}' as description,
    owner #>> '{}' as owner,
    anchor_at,
    anchor_label #>> '{}' as anchor_label,
    step_limit,
    step_kind,
    gap_seconds * interval '1 second' as gap,
    gap_session,
    collapse_repeats,
    unit,
    top_paths

from {{ ref('paths') }}
