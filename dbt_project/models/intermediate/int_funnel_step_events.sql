-- Every event that matches a step or an exclusion of a funnel, with the unit it counts for:
-- the device (anonymous_id) for `unit: device`, the person for `unit: user`
-- (int_device_persons; a device never identified is the person 'device:<anonymous_id>').
-- A view: the funnel facts' plan reads it restricted to a window. The facts themselves read
-- funnel_unit_events() per unit (macros/funnels/funnel_unit_events.sql), as this view does.
select * from {{ funnel_unit_events('device') }} as device_units
union all
select * from {{ funnel_unit_events('user') }} as user_units
