{#-
    The PostgreSQL functions the funnel attempts call, created by the project's on-run-start hook
    (dbt_project.yml: `funnel_functions_ddl()`) before any model runs, in the schema of the
    intermediate models (`intermediate`, or the pull-request check's prefixed one), so a check
    never replaces the functions production runs.

    funnel_walk(): one unit's attempts at one funnel, from its stream of events.
    The semantics are written down once, in retrolytics/semantics/funnels.py (and summarised in the
    description of fct_funnel_entries); this function implements them for the SQL models. It is
    generic: the funnel arrives as arguments (from the compiled seeds), never as SQL text.

    One pass over the unit's events in stream order (the caller sorts them), constant work per
    event and step: the time a funnel takes grows linearly with its events, and with its steps
    only through the bit masks (no join per pair of steps).

    Arguments: the funnel (step count, order, conversion window, each step's `within` bound
    (element k bounds step k; null for none), the exclusions' from/to steps, the breakdown's
    attribution), then the stream as parallel arrays: times, the bit mask of steps each event
    matches (bit k-1 = step k), the bit mask of exclusions it matches, its hold_constant group
    (equal groups = equal values), and its id, device, user_id and breakdown value; last, the
    end of the data (funnel_data_end()), after which a live attempt's deadline makes it
    `in_progress` rather than `dropped_off`; and the exclusions' scope (`window`, or
    `until_step`: a dropped-off attempt is then watched after its deadline, by a scan forward
    from the event that ended it, which stops once the watch has placed every exclusion's last
    step); and which events break a strict attempt (`step_events`, or `any_event`: the stream
    then holds every event of the unit, those matching no step with a step mask of 0). Returns one
    row per attempt, in stream order; nothing needs joining back to the events afterwards.
-#}
{% macro funnel_functions_ddl() -%}
    create schema if not exists {{ adapter.quote(generate_schema_name('intermediate', none)) }};
    {{ funnel_walk_function(funnel_walk_name()) }};
    {{ funnel_hold_values_function(funnel_hold_values_name()) }}
{%- endmacro %}


{% macro funnel_walk_name() -%}
    {{- return(adapter.quote(generate_schema_name('intermediate', none)) ~ '.funnel_walk') -}}
{%- endmacro %}


{% macro funnel_walk_function(name) -%}
-- Before the arguments `entries`, `exclusion_scope` and `broken_by`: the function had one to
-- three arguments less (an overload otherwise); likewise funnel_walk_windows before `broken_by`.
drop function if exists {{ name }}(integer, text, interval, interval[], integer[], integer[], text,
    integer, timestamptz[], integer[], integer[], integer[], uuid[], text[], text[], text[],
    timestamptz);
drop function if exists {{ name }}(integer, text, interval, interval[], integer[], integer[], text,
    integer, timestamptz[], integer[], integer[], integer[], uuid[], text[], text[], text[],
    timestamptz, text);
drop function if exists {{ name }}(integer, text, interval, interval[], integer[], integer[], text,
    integer, timestamptz[], integer[], integer[], integer[], uuid[], text[], text[], text[],
    timestamptz, text, text);
drop function if exists {{ name }}_windows(integer, text, interval, interval[], integer[],
    integer[], text, integer, timestamptz[], integer[], integer[], integer[], uuid[], text[],
    text[], text[], timestamptz);
{{ funnel_windows_function(name ~ '_windows') }};
create or replace function {{ name }}(
{{ funnel_walk_arguments() }},
    entries text default 'sequential',
    exclusion_scope text default 'window',
    broken_by text default 'step_events'
) {{ funnel_walk_result() }}
language plpgsql immutable parallel safe rows 4
as $walk$
declare
    event_count integer := coalesce(cardinality(event_times), 0);
    exclusion_count integer := coalesce(cardinality(exclusion_from), 0);
    unordered boolean := order_mode = 'unordered';
    strict_order boolean := order_mode = 'strict';
    -- broken_by any_event: an event matching no step (mask 0) breaks a live strict attempt.
    any_event_breaks boolean := order_mode = 'strict' and broken_by = 'any_event';
    i integer := 1;
    alive boolean := false;
    entry integer;
    entered_step integer;
    filled integer;
    filled_mask integer;
    hold integer;
    deadline timestamptz;
    indexes integer[];
    times timestamptz[];
    event_time timestamptz;
    mask integer;
    candidates integer;
    step integer;
    did_fill boolean;
    excluded boolean;
    all_events boolean := attribution = 'all_events';
    stream_values text[];
    stream_value text;
    -- exclusion_scope until_step: the watch of a dropped-off attempt (see the semantics).
    until_step boolean := exclusion_scope = 'until_step';
    last_to integer;  -- the last step an exclusion ends at (until_step only)
    dropped_outcome text;
    watch_i integer;
    watch_filled integer;
    watch_mask integer;
    watch_times timestamptz[];
    watch_pending integer;
    watch_step integer;
    watch_from timestamptz;
{{ funnel_walk_emit_variables() }}
begin
    -- entries: every_entry: each step-1 event opens a window of its own (funnel_walk_windows).
    if entries = 'every_entry' then
        return query select * from {{ name }}_windows(
            step_count, order_mode, conversion_window, step_within, exclusion_from, exclusion_to,
            attribution, attribution_step, event_times, event_steps, event_exclusions, event_holds,
            event_ids, event_devices, event_users, event_breakdowns, data_end, broken_by);
        return;
    end if;
{{ funnel_stream_values() }}
    if until_step then
        last_to := (select max(to_step) from unnest(exclusion_to) as to_step);
    end if;
    foreach stream_value in array stream_values loop
        i := 1;
        alive := false;
        while i <= event_count loop
            -- all_events: only this value's events (the event is another value's).
            if all_events and event_breakdowns[i] is distinct from stream_value then
                i := i + 1;
                continue;
            end if;

            event_time := event_times[i];
            mask := event_steps[i];

            -- The first event after the deadline ends the attempt; the event is then looked at again.
            if alive and event_time > deadline then
                dropped_outcome := 'dropped_off';
                -- until_step: watch the attempt from this event on. Its steps go on being placed
                -- (no deadline, not reached); an exclusion between step i and step j counts if
                -- before step i's time + the window, or once step j is placed.
                if until_step then
                    watch_i := i;
                    watch_filled := filled;
                    watch_mask := filled_mask;
                    watch_times := times;
                    watch_pending := null;
                    while watch_i <= event_count and watch_filled < last_to loop
                        if all_events and event_breakdowns[watch_i] is distinct from stream_value then
                            watch_i := watch_i + 1;
                            continue;
                        end if;
                        if event_holds[watch_i] is not distinct from hold then
                            candidates := case when unordered
                                then event_steps[watch_i] & ~watch_mask
                                else event_steps[watch_i] & (1 << watch_filled) end;
                            if candidates <> 0 then
                                watch_step := 1;
                                while candidates & (1 << (watch_step - 1)) = 0 loop
                                    watch_step := watch_step + 1;
                                end loop;
                                watch_times[watch_step] := event_times[watch_i];
                                watch_filled := watch_filled + 1;
                                watch_mask := watch_mask | (1 << (watch_step - 1));
                            end if;
                        end if;
                        if event_exclusions[watch_i] <> 0 then
                            for x in 1 .. exclusion_count loop
                                -- Step i's time: unordered exclusions start at step 1 (the entry).
                                watch_from := case when unordered then event_times[entry]
                                    else watch_times[exclusion_from[x]] end;
                                if event_exclusions[watch_i] & (1 << (x - 1)) <> 0
                                    and exclusion_from[x] <= watch_filled
                                    and watch_filled < exclusion_to[x]
                                    and event_times[watch_i] > watch_from
                                then
                                    watch_pending := case
                                        when event_times[watch_i]
                                            < (watch_from at time zone 'UTC' + conversion_window)
                                                at time zone 'UTC'
                                            then 0
                                        else least(watch_pending, exclusion_to[x])
                                    end;
                                end if;
                            end loop;
                        end if;
                        if watch_filled >= watch_pending then
                            dropped_outcome := 'excluded';
                            exit;
                        end if;
                        watch_i := watch_i + 1;
                    end loop;
                end if;
                {{ funnel_walk_emit('dropped_outcome', 'deadline', 'deadline') }}
                alive := false;
            end if;

            -- Which step would the event fill? Idle: step 1 (unordered: its lowest step) enters the
            -- funnel. Alive: the next step (unordered: its lowest step not filled yet), provided the
            -- hold_constant values equal the entry's.
            step := 0;
            if not alive then
                candidates := case when unordered then mask else mask & 1 end;
            elsif event_holds[i] is distinct from hold then
                candidates := 0;
            elsif unordered then
                candidates := mask & ~filled_mask;
            else
                candidates := mask & (1 << filled);
            end if;
            if candidates <> 0 then
                for s in 1 .. step_count loop
                    if candidates & (1 << (s - 1)) <> 0 then
                        step := s;
                        exit;
                    end if;
                end loop;
            end if;

            if not alive then
                if step > 0 then
                    alive := true;
                    entry := i;
                    entered_step := step;
                    hold := event_holds[i];
                    indexes := array_fill(null::integer, array[step_count]);
                    times := array_fill(null::timestamptz, array[step_count]);
                    filled := 0;
                    filled_mask := 0;
                else
                    i := i + 1;
                    continue;
                end if;
            end if;

            did_fill := step > 0;
            if did_fill then
                indexes[step] := i;
                times[step] := event_time;
                filled := filled + 1;
                filled_mask := filled_mask | (1 << (step - 1));
                -- In UTC: months and days follow the UTC calendar whatever the session's time zone
                -- (in a zone with summer time, a day added across the change is 23 or 25 hours).
                deadline := (event_times[entry] at time zone 'UTC' + conversion_window)
                    at time zone 'UTC';
                if not unordered and filled < step_count and step_within[filled + 1] is not null then
                    deadline := least(
                        deadline,
                        (event_time at time zone 'UTC' + step_within[filled + 1]) at time zone 'UTC'
                    );
                end if;
                if entry = i then
                    i := i + 1;
                    continue;
                end if;
            end if;

            if did_fill and filled = step_count then
                {{ funnel_walk_emit("'converted'::text", 'event_time', 'deadline') }}
                alive := false;
                i := i + 1;
                continue;
            end if;

            if not did_fill and strict_order and mask <> 0 then
                {{ funnel_walk_emit("'broken_order'::text", 'event_time', 'deadline') }}
                alive := false;
                continue;  -- the same event, looked at again by an idle unit
            end if;

            if event_exclusions[i] <> 0 then
                excluded := false;
                for x in 1 .. exclusion_count loop
                    -- Step i's time; an unordered funnel's exclusions start at step 1, its entry
                    -- (the validator refuses any other range there).
                    if event_exclusions[i] & (1 << (x - 1)) <> 0
                        and exclusion_from[x] <= filled and filled < exclusion_to[x]
                        and event_time > (case when unordered then event_times[entry]
                            else times[exclusion_from[x]] end)
                    then
                        excluded := true;
                        exit;
                    end if;
                end loop;
                if excluded then
                    {{ funnel_walk_emit("'excluded'::text", 'event_time', 'deadline') }}
                    alive := false;
                    if did_fill then
                        i := i + 1;
                    end if;
                    continue;  -- unless it filled a step, looked at again by an idle unit
                end if;
            end if;

            -- broken_by any_event (PostHog's strict funnels): an event matching no step, and no
            -- exclusion that disqualified the attempt first, breaks it.
            if any_event_breaks and mask = 0 then
                {{ funnel_walk_emit("'broken_order'::text", 'event_time', 'deadline') }}
                alive := false;
            end if;

            i := i + 1;
        end loop;

        -- Still alive when the stream ends: in progress if the deadline is after the end of the data.
        if alive then
            {{ funnel_walk_emit(
                "case when deadline > data_end then 'in_progress' else 'dropped_off' end",
                'deadline', 'deadline') }}
        end if;
    end loop;
end
$walk$;
{%- endmacro %}


{#-
    funnel_walk_windows(): the walk of `entries: every_entry` (the arguments and rows of
    funnel_walk(), which calls it). Every step-1 event opens a window; windows are grouped into
    attempts; each attempt returns the row of its reported window. The rule is written once in
    retrolytics/semantics/funnels.py ("Every entry"), which this follows step by step.

    State: windows in parallel arrays indexed by window number (w_*; w_steps holds, flat, the
    stream index of the event that filled each step of each window), attempts likewise (a_*),
    and `live`, the numbers of the windows still alive, in the order they opened. Per event the
    work is O(live windows^2), and an attempt keeps at most one live window per step count and
    hold value (a later window that catches up replaces the earlier): no rescan of the stream
    per step-1 event. Its rows are funnel_walk()'s (funnel_walk_emit), read from entry,
    entered_step, times, filled and indexes.
-#}
{% macro funnel_windows_function(name) -%}
{#- Whether window w ranks before window `best` as its attempt's reported window: more steps filled,
    then not excluded, then the first to have filled that many. -#}
{%- set w_before_best -%}
(w_filled[w] > w_filled[best]
    or (w_filled[w] = w_filled[best]
        and ((w_outcome[w] = 'excluded') < (w_outcome[best] = 'excluded')
            or ((w_outcome[w] = 'excluded') = (w_outcome[best] = 'excluded')
                and w_reached[w] < w_reached[best]))))
{%- endset -%}
{%- set emit -%}
            best := a_best[next_emit];
            entry := w_entry[best];
            entered_step := 1;
            filled := w_filled[best];
            indexes := w_steps[(best - 1) * step_count + 1 : best * step_count];
            times := array_fill(null::timestamptz, array[step_count]);
            for n in 1 .. step_count loop
                times[n] := event_times[indexes[n]];
            end loop;
            if a_progress[next_emit] is not null and w_outcome[best] <> 'converted' then
                {{ funnel_walk_emit(
                    "'in_progress'::text", 'a_progress[next_emit]', 'a_progress[next_emit]') }}
            else
                {{ funnel_walk_emit('w_outcome[best]', 'w_ended_at[best]', 'w_deadline[best]') }}
            end if;
            next_emit := next_emit + 1;
{%- endset -%}
create or replace function {{ name }}(
{{ funnel_walk_arguments() }},
    broken_by text default 'step_events'
) {{ funnel_walk_result() }}
language plpgsql immutable parallel safe rows 4
as $windows$
declare
    event_count integer := coalesce(cardinality(event_times), 0);
    exclusion_count integer := coalesce(cardinality(exclusion_from), 0);
    strict_order boolean := order_mode = 'strict';
    any_event_breaks boolean := order_mode = 'strict' and broken_by = 'any_event';
    all_events boolean := attribution = 'all_events';
    stream_values text[];
    stream_value text;
    event_time timestamptz;
    mask integer;
    -- windows
    w_count integer;
    w_attempt integer[];
    w_entry integer[];
    w_hold integer[];
    w_filled integer[];
    w_steps integer[];
    w_deadline timestamptz[];
    w_reached integer[];
    w_outcome text[];
    w_ended_at timestamptz[];
    live integer[];
    still integer[];
    -- attempts
    a_count integer;
    a_span_end timestamptz[];
    a_ended boolean[];
    a_best integer[];
    a_progress timestamptz[];
    next_emit integer;
    -- one window's turn
    w integer;
    a integer;
    x integer;
    k integer;
    caught boolean;
    used_up boolean;
    did_fill boolean;
    ending text;
    ending_at timestamptz;
    -- the reported window, as funnel_walk()'s row fragments read it
    best integer;
    entry integer;
    entered_step integer;
    filled integer;
    indexes integer[];
    times timestamptz[];
{{ funnel_walk_emit_variables() }}
begin
{{ funnel_stream_values() }}
    foreach stream_value in array stream_values loop
        w_count := 0;
        w_attempt := '{}'; w_entry := '{}'; w_hold := '{}'; w_filled := '{}'; w_steps := '{}';
        w_deadline := '{}'; w_reached := '{}'; w_outcome := '{}'; w_ended_at := '{}';
        live := '{}';
        a_count := 0;
        a_span_end := '{}'; a_ended := '{}'; a_best := '{}'; a_progress := '{}';
        next_emit := 1;
        for i in 1 .. event_count loop
            if all_events and event_breakdowns[i] is distinct from stream_value then
                continue;
            end if;
            event_time := event_times[i];
            mask := event_steps[i];

            -- Every live window takes the event, the attempts in the order they entered; a
            -- conversion uses it up.
            used_up := false;
            still := '{}';
            foreach w in array live loop
                a := w_attempt[w];
                if a_ended[a] then
                    continue;  -- its attempt converted at this event
                end if;
                if used_up then
                    still := still || w;
                    continue;
                end if;
                ending := null;
                if event_time > w_deadline[w] then
                    ending := 'dropped_off';
                    ending_at := w_deadline[w];
                else
                    did_fill := event_holds[i] is not distinct from w_hold[w]
                        and mask & (1 << w_filled[w]) <> 0;
                    if did_fill then
                        w_filled[w] := w_filled[w] + 1;
                        w_steps[(w - 1) * step_count + w_filled[w]] := i;
                        w_reached[w] := i;
                        w_deadline[w] := (event_times[w_entry[w]] at time zone 'UTC'
                            + conversion_window) at time zone 'UTC';
                        if w_filled[w] < step_count and step_within[w_filled[w] + 1] is not null then
                            w_deadline[w] := least(
                                w_deadline[w],
                                (event_time at time zone 'UTC' + step_within[w_filled[w] + 1])
                                    at time zone 'UTC'
                            );
                        end if;
                    end if;
                    if did_fill and w_filled[w] = step_count then
                        ending := 'converted';
                        ending_at := event_time;
                    elsif not did_fill and strict_order and mask <> 0 then
                        ending := 'broken_order';
                        ending_at := event_time;
                    elsif event_exclusions[i] <> 0 then
                        for e in 1 .. exclusion_count loop
                            if event_exclusions[i] & (1 << (e - 1)) <> 0
                                and exclusion_from[e] <= w_filled[w]
                                and w_filled[w] < exclusion_to[e]
                                and event_time > event_times[
                                    w_steps[(w - 1) * step_count + exclusion_from[e]]]
                            then
                                ending := 'excluded';
                                ending_at := event_time;
                                exit;
                            end if;
                        end loop;
                    end if;
                    -- broken_by any_event: an event matching no step, unless an exclusion ended
                    -- the window first.
                    if ending is null and any_event_breaks and mask = 0 then
                        ending := 'broken_order';
                        ending_at := event_time;
                    end if;
                end if;
                if ending is null then
                    still := still || w;
                    continue;
                end if;
                w_outcome[w] := ending;
                w_ended_at[w] := ending_at;
                if ending = 'converted' then
                    a_best[a] := w;
                    a_ended[a] := true;
                    used_up := true;
                else
                    best := a_best[a];
                    if best is null or {{ w_before_best }} then
                        a_best[a] := w;
                    end if;
                end if;
            end loop;
            live := '{}';
            foreach w in array still loop
                if not a_ended[w_attempt[w]] then
                    live := live || w;
                end if;
            end loop;

            -- An attempt without a live window has ended.
            for attempt_number in next_emit .. a_count loop
                if not a_ended[attempt_number] then
                    caught := false;
                    foreach w in array live loop
                        if w_attempt[w] = attempt_number then
                            caught := true;
                            exit;
                        end if;
                    end loop;
                    a_ended[attempt_number] := not caught;
                end if;
            end loop;

            -- A step-1 event opens a window: in the latest attempt while it is open, else in a
            -- new attempt.
            if not used_up and mask & 1 <> 0 then
                if a_count = 0 or a_ended[a_count] or event_time > a_span_end[a_count] then
                    a_count := a_count + 1;
                    a_span_end[a_count] := (event_time at time zone 'UTC' + conversion_window)
                        at time zone 'UTC';
                    a_ended[a_count] := false;
                    a_best[a_count] := null;
                    a_progress[a_count] := null;
                end if;
                w_count := w_count + 1;
                w_attempt[w_count] := a_count;
                w_entry[w_count] := i;
                w_hold[w_count] := event_holds[i];
                w_filled[w_count] := 1;
                w_steps[w_count * step_count] := null;  -- room for its steps
                w_steps[(w_count - 1) * step_count + 1] := i;
                w_reached[w_count] := i;
                w_deadline[w_count] := (event_time at time zone 'UTC' + conversion_window)
                    at time zone 'UTC';
                if step_within[2] is not null then
                    w_deadline[w_count] := least(
                        w_deadline[w_count],
                        (event_time at time zone 'UTC' + step_within[2]) at time zone 'UTC'
                    );
                end if;
                w_outcome[w_count] := null;
                w_ended_at[w_count] := null;
                live := live || w_count;
            end if;

            -- A window that a later one of its attempt, with the same hold value, has caught up
            -- with is dropped: the later one fills every step it would.
            still := '{}';
            for k in reverse cardinality(live) .. 1 loop
                w := live[k];
                caught := false;
                for j in k + 1 .. cardinality(live) loop
                    x := live[j];
                    if w_attempt[x] = w_attempt[w] and w_hold[x] is not distinct from w_hold[w]
                        and w_filled[x] = w_filled[w]
                    then
                        caught := true;
                        exit;
                    end if;
                end loop;
                if not caught then
                    still := w || still;
                end if;
            end loop;
            live := still;

            -- Attempts return in the order they entered, each once it has ended.
            while next_emit <= a_count and a_ended[next_emit] loop
{{ emit }}
            end loop;
        end loop;

        -- The stream ends: a live window whose deadline is after the end of the data keeps its
        -- attempt in progress (it may still go further); every live window is a candidate.
        foreach w in array live loop
            a := w_attempt[w];
            if data_end is not null and w_deadline[w] > data_end then
                a_progress[a] := greatest(a_progress[a], w_deadline[w]);
            end if;
            w_outcome[w] := 'dropped_off';
            w_ended_at[w] := w_deadline[w];
            best := a_best[a];
            if best is null or {{ w_before_best }} then
                a_best[a] := w;
            end if;
        end loop;
        while next_emit <= a_count loop
{{ emit }}
        end loop;
    end loop;
end
$windows$
{%- endmacro %}


{#- The breakdown values a walk goes over: with `all_events` attribution (PostHog's "all events")
    one walk per value, over the events of that value only, the values in the order they first
    appear in the stream; with any other, one walk over every event (one null value). Two
    statements, not a CASE: an expression with a subquery is run by the executor, which the
    other attributions then paid for on every call. -#}
{% macro funnel_stream_values() -%}
    if all_events then
        stream_values := coalesce((
            select array_agg(value_seen order by first_seen)
            from (
                select value_seen, min(position_seen) as first_seen
                from unnest(event_breakdowns) with ordinality as seen (value_seen, position_seen)
                group by value_seen
            ) as firsts
        ), '{}');
    else
        stream_values := array[null::text];
    end if;
{%- endmacro %}


{#- The variables funnel_walk_emit() uses, declared by both walks. -#}
{% macro funnel_walk_emit_variables() -%}
    touch integer;  -- the stream index of the event whose value is the breakdown
    filler integer;
{%- endmacro %}


{#- Return one attempt of funnel_walk() or funnel_walk_windows(): its columns (the functions' OUT
    parameters) from the walk's state (entry, entered_step, times, filled, indexes), then `return
    next`. Assignments of simple expressions, which PL/pgSQL evaluates without the executor: a
    `return query select` per attempt started it once per attempt.

    The breakdown value: first / last touch, the first / last value neither null nor '' among
    the events that filled the steps (they filled them in stream order, so by their index in the
    stream); `step`, the value of the event that filled the attribution step; `all_events`, the
    entry's (the walk went over that value's events only). -#}
{% macro funnel_walk_emit(outcome, ended_at, deadline_at) -%}
entry_event_id := event_ids[entry];
entry_device := event_devices[entry];
entry_user_id := event_users[entry];
entered_at := event_times[entry];
entry_step := entered_step;
step_reached_at := times;
furthest_step := filled;
outcome := {{ outcome }};
ended_at := {{ ended_at }};
deadline_at := {{ deadline_at }};
touch := null;
if attribution in ('first_touch', 'last_touch') then
    foreach filler in array indexes loop
        if event_breakdowns[filler] <> ''
            and (touch is null or (filler < touch) = (attribution = 'first_touch'))
        then
            touch := filler;
        end if;
    end loop;
elsif attribution = 'step' then
    touch := indexes[attribution_step];
elsif attribution = 'all_events' then
    touch := entry;
end if;
breakdown_value := event_breakdowns[touch];
return next;
{%- endmacro %}


{#-
    funnel_hold_values(): an event's hold_constant values, as a JSON array in the order of the
    names (a JSON array, stg_funnels.hold_constant); a missing property and JSON null are both
    null. Null when the funnel holds nothing constant. A function, not a subquery over the
    names: Citus cannot push a correlated subquery down next to a reference table.
-#}
{% macro funnel_hold_values_name() -%}
    {{- return(adapter.quote(generate_schema_name('intermediate', none)) ~ '.funnel_hold_values') -}}
{%- endmacro %}


{% macro funnel_hold_values_function(name) -%}
create or replace function {{ name }}(properties jsonb, names jsonb) returns jsonb
language plpgsql immutable parallel safe
as $hold$
declare
    held text;
    found jsonb := '[]'::jsonb;
begin
    if coalesce(jsonb_array_length(names), 0) = 0 then
        return null;
    end if;
    for held in select jsonb_array_elements_text(names) loop
        found := found || jsonb_build_array(nullif(properties -> held, 'null'::jsonb));
    end loop;
    return found;
end;
$hold$
{%- endmacro %}


{#- The arguments funnel_walk() and funnel_walk_windows() both start with: the funnel, the stream
    as parallel arrays and the end of the data (the header of this file describes them). -#}
{% macro funnel_walk_arguments() -%}
    step_count integer,
    order_mode text,
    conversion_window interval,
    step_within interval[],
    exclusion_from integer[],
    exclusion_to integer[],
    attribution text,
    attribution_step integer,
    event_times timestamptz[],
    event_steps integer[],
    event_exclusions integer[],
    event_holds integer[],
    event_ids uuid[],
    event_devices text[],
    event_users text[],
    event_breakdowns text[],
    data_end timestamptz default null
{%- endmacro %}


{#- The attempt rows both walks return. -#}
{% macro funnel_walk_result() -%}
returns table (
    entry_event_id uuid,
    entry_device text,
    entry_user_id text,
    entered_at timestamptz,
    entry_step integer,
    step_reached_at timestamptz[],
    furthest_step integer,
    outcome text,
    ended_at timestamptz,
    deadline_at timestamptz,
    breakdown_value text
)
{%- endmacro %}
