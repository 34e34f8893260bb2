"""The dashboard as code: a Superset import bundle (YAML files of a database, its datasets, the
charts and one dashboard) generated from ``retrolytics.bi.metadata``.

Every object's UUID is derived from its name (uuid5), so importing the bundle again overwrites
the same objects instead of adding copies. The bundle never holds a password: the database's
URI carries Superset's mask and the password travels beside the bundle in the import request.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from retrolytics.bi import MARTS_SCHEMA
from retrolytics.bi.metadata import DashboardMetadata, FunnelCharts, Model, RetentionCharts

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://retrolytics.invalid/superset")
VERSION = "1.0.0"
DATABASE_NAME = "Retrolytics marts"
DATABASE_FILE = "databases/Retrolytics_marts.yaml"
SCHEMA = MARTS_SCHEMA
BIG_NUMBER_TITLE = "Sessions, all days"
ROOT = "retrolytics_dashboard"  # the bundle's top folder
GRID_WIDTH = 12
TEMPORAL_TYPES = ("date", "timestamp")


def object_uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


DATABASE_UUID = object_uuid("database", DATABASE_NAME)
DASHBOARD_UUID = object_uuid("dashboard", "retrolytics")
DASHBOARD_SLUG = "retrolytics"


@dataclass(frozen=True)
class Chart:
    title: str
    dataset: str
    viz_type: str
    params: dict[str, Any]
    description: str = ""
    width: int = 4
    height: int = 50

    @property
    def uuid(self) -> str:
        return object_uuid("chart", self.title)


@dataclass
class Layout:
    rows: list[list[Chart]] = field(default_factory=list)

    @property
    def charts(self) -> list[Chart]:
        return [chart for row in self.rows for chart in row]


# -- chart parameters --------------------------------------------------------------------------


def _metric(sql: str, label: str) -> dict[str, Any]:
    return {
        "expressionType": "SQL",
        "sqlExpression": sql,
        "label": label,
        "hasCustomLabel": True,
        "optionName": f"metric_{label.replace(' ', '_')}",
    }


def _equals(column: str, value: str | int) -> dict[str, Any]:
    return {
        "clause": "WHERE",
        "expressionType": "SIMPLE",
        "subject": column,
        "operator": "==",
        "operatorId": "EQUALS",
        "comparator": value,
        "filterOptionName": f"filter_{column}_{value}",
    }


def _sql_filter(name: str, sql: str) -> dict[str, Any]:
    return {
        "clause": "WHERE",
        "expressionType": "SQL",
        "sqlExpression": sql,
        "filterOptionName": f"filter_{name}",
    }


def _all_time(column: str) -> dict[str, Any]:
    """The time-range filter Superset's temporal x-axis expects; "No filter": all history."""
    return {
        "clause": "WHERE",
        "expressionType": "SIMPLE",
        "subject": column,
        "operator": "TEMPORAL_RANGE",
        "comparator": "No filter",
    }


def _daily_line(x_axis: str, metric: dict[str, Any], filters: list, y_format: str) -> dict:
    return {
        "x_axis": x_axis,
        "time_grain_sqla": "P1D",
        "metrics": [metric],
        "groupby": [],
        "adhoc_filters": [_all_time(x_axis), *filters],
        "row_limit": 10000,
        "y_axis_format": y_format,
        "x_axis_time_format": "smart_date",
        "show_legend": False,
        "rich_tooltip": True,
        "markerEnabled": True,
    }


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- the charts --------------------------------------------------------------------------------


def session_charts() -> list[Chart]:
    sessions = _metric("SUM(sessions)", "sessions")
    big_number = Chart(
        title=BIG_NUMBER_TITLE,
        dataset="mart_sessions_daily",
        viz_type="big_number_total",
        params={
            "metric": sessions,
            "adhoc_filters": [],
            "subheader": "sessions (bots left out); a session lies in one day, so days add up",
            "y_axis_format": ",d",
            "header_font_size": 0.4,
            "subheader_font_size": 0.125,
        },
        description="SUM(sessions) of mart_sessions_daily.",
        width=3,
    )
    daily = Chart(
        title="Sessions by day",
        dataset="mart_sessions_daily",
        viz_type="echarts_timeseries_line",
        params=_daily_line("session_day", sessions, [], ",d"),
        width=9,
    )
    return [big_number, daily]


def funnel_charts(funnel: FunnelCharts) -> list[list[Chart]]:
    """Two rows per funnel: its steps over all days, steps and conversion by month, conversion
    by day; and, for a funnel with a breakdown, conversion by breakdown value."""
    name = funnel.name
    of_funnel = _equals("funnel_name", name)
    overall = _equals("breakdown_value", "(all)")
    steps = Chart(
        title=f"{name}: steps, all days",
        dataset="mart_funnel_unit_steps",
        viz_type="funnel",
        params={
            "groupby": ["step"],
            "metric": _metric("COUNT(DISTINCT unit_id)", "units"),
            "adhoc_filters": [of_funnel],
            "row_limit": 100,
            "sort_by_metric": True,
            "show_labels": True,
            "show_legend": False,
            "label_type": "key_value_percent",
            "number_format": "SMART_NUMBER",
            "percent_calculation_type": "first_step",
        },
        description=funnel.description,
        width=4,
    )
    by_month = Chart(
        title=f"{name}: steps and conversion by month",
        dataset="mart_funnel_conversion",
        viz_type="table",
        params={
            "query_mode": "raw",
            "all_columns": [
                "period_start",
                "step_number",
                "step_name",
                "units",
                "units_in_progress",
                "conversion_overall",
            ],
            "order_by_cols": [
                json.dumps(["period_start", True]),
                json.dumps(["step_number", True]),
            ],
            "adhoc_filters": [of_funnel, _equals("period", "month"), overall],
            "row_limit": 1000,
            "column_config": {"conversion_overall": {"d3NumberFormat": ".1%"}},
        },
        description="The mart's (all) rows of each calendar month.",
        width=4,
    )
    last_step = _equals("step_number", funnel.step_count)
    by_day = Chart(
        title=f"{name}: conversion by day",
        dataset="mart_funnel_conversion",
        viz_type="echarts_timeseries_line",
        params=_daily_line(
            "period_start",
            _metric("MAX(conversion_overall)", "conversion"),
            [of_funnel, _equals("period", "day"), overall, last_step],
            ".1%",
        ),
        description="conversion_overall at the last step, per UTC day of entry; attempts still "
        "in progress left out.",
        width=4,
    )
    rows = [[steps, by_month, by_day]]
    if funnel.breakdown is not None:
        rows.append([_breakdown_chart(funnel)])
    return rows


def _breakdown_chart(funnel: FunnelCharts) -> Chart:
    last = funnel.step_count
    entered = "COUNT(DISTINCT unit_id) FILTER (WHERE step_number = 1)"
    converted = f"COUNT(DISTINCT unit_id) FILTER (WHERE step_number = {last})"
    return Chart(
        title=f"{funnel.name}: conversion by {funnel.breakdown}",
        dataset="mart_funnel_unit_steps",
        viz_type="table",
        params={
            "query_mode": "aggregate",
            "groupby": ["breakdown_value"],
            "metrics": [
                _metric(entered, "entered"),
                _metric(converted, "converted"),
                _metric(f"{converted}::float / NULLIF({entered}, 0)", "conversion"),
            ],
            "adhoc_filters": [
                _equals("funnel_name", funnel.name),
                _sql_filter(
                    "settled_with_value", "breakdown_value IS NOT NULL AND NOT in_progress"
                ),
            ],
            "timeseries_limit_metric": _metric(entered, "entered"),
            "order_desc": True,
            "row_limit": 1000,
            "column_config": {"conversion": {"d3NumberFormat": ".1%"}},
        },
        description="Settled units (attempts in progress left out) over all days, by breakdown "
        "value; a unit with attempts under two values counts under both.",
        width=GRID_WIDTH,
    )


def retention_chart(retention: RetentionCharts) -> Chart:
    return Chart(
        title=f"{retention.name}: retention",
        dataset="mart_retention",
        viz_type="pivot_table_v2",
        params={
            "groupbyRows": ["cohort_period"],
            "groupbyColumns": ["period_offset"],
            "metrics": [_metric("MAX(retention_rate)", "retention")],
            "adhoc_filters": [
                _equals("retention_name", retention.name),
                _equals("breakdown_value", "(all)"),
            ],
            "aggregateFunction": "Sum",
            "metricsLayout": "COLUMNS",
            "valueFormat": ".0%",
            "rowOrder": "key_a_to_z",
            "colOrder": "key_a_to_z",
            "row_limit": 10000,
            "date_format": "smart_date",
        },
        description=retention.description,
        width=6,
        height=60,
    )


def layout(metadata: DashboardMetadata) -> Layout:
    rows = [session_charts()]
    for funnel in metadata.funnels:
        rows.extend(funnel_charts(funnel))
    retentions = [retention_chart(item) for item in metadata.retentions]
    rows.extend(retentions[i : i + 2] for i in range(0, len(retentions), 2))
    return Layout(rows)


# -- the YAML files ----------------------------------------------------------------------------


def _database(masked_uri: str) -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME,
        "sqlalchemy_uri": masked_uri,
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_csv_upload": False,
        "extra": {"metadata_params": {}, "engine_params": {}, "schemas_allowed_for_csv_upload": []},
        "uuid": DATABASE_UUID,
        "version": VERSION,
    }


def _dataset(model: Model, extra_columns: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    columns = [
        {
            "column_name": column.name,
            "type": column.data_type.upper() if column.data_type else None,
            "is_dttm": bool(column.data_type and column.data_type.startswith(TEMPORAL_TYPES)),
            "groupby": True,
            "filterable": True,
            "description": column.description,
        }
        for column in model.columns
    ]
    return {
        "table_name": model.name,
        "schema": SCHEMA,
        "description": model.description,
        "main_dttm_col": None,
        "sql": None,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "uuid": object_uuid("dataset", model.name),
        "metrics": [{"metric_name": "count", "verbose_name": "COUNT(*)", "expression": "COUNT(*)"}],
        "columns": columns + list(extra_columns),
        "version": VERSION,
        "database_uuid": DATABASE_UUID,
    }


def step_column(funnels: Iterable[FunnelCharts]) -> dict[str, Any]:
    """A calculated column of mart_funnel_unit_steps naming each funnel's steps, so the funnel
    chart reads "2. added_to_cart" rather than "2"."""
    cases = [
        f"WHEN funnel_name = {_sql_text(funnel.name)} AND step_number = {number} "
        f"THEN {_sql_text(f'{number}. {label}')}"
        for funnel in funnels
        for number, label in enumerate(funnel.step_labels, start=1)
    ]
    expression = (
        "CASE " + " ".join(cases) + " ELSE step_number::text END" if cases else "step_number::text"
    )
    return {
        "column_name": "step",
        "type": "TEXT",
        "expression": expression,
        "groupby": True,
        "filterable": True,
        "description": "The step's number and name, from the funnel declarations.",
    }


def _chart(chart: Chart) -> dict[str, Any]:
    return {
        "slice_name": chart.title,
        "description": chart.description or None,
        "viz_type": chart.viz_type,
        "params": {"viz_type": chart.viz_type, **chart.params},
        "query_context": None,
        "cache_timeout": None,
        "uuid": chart.uuid,
        "version": VERSION,
        "dataset_uuid": object_uuid("dataset", chart.dataset),
    }


def _position(title: str, board: Layout) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
    }
    for index, row in enumerate(board.rows):
        row_id = f"ROW-{index}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for chart in row:
            chart_id = f"CHART-{chart.uuid[:8]}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": chart.width,
                    "height": chart.height,
                    "chartId": 0,  # the import replaces it by the chart's id (found by uuid)
                    "uuid": chart.uuid,
                    "sliceName": chart.title,
                },
            }
    return position


def _dashboard(metadata: DashboardMetadata, board: Layout) -> dict[str, Any]:
    return {
        "dashboard_title": metadata.title,
        "description": metadata.description,
        "css": "",
        "slug": DASHBOARD_SLUG,
        "uuid": DASHBOARD_UUID,
        "position": _position(metadata.title, board),
        "metadata": {
            "color_scheme": "supersetColors",
            "refresh_frequency": 0,
            "expanded_slices": {},
            "label_colors": {},
            "timed_refresh_immune_slices": [],
            "cross_filters_enabled": False,
            "native_filter_configuration": [],
        },
        "published": True,
        "version": VERSION,
    }


def files(metadata: DashboardMetadata, masked_uri: str) -> dict[str, dict[str, Any]]:
    """The bundle's files: path inside the bundle -> YAML document."""
    board = layout(metadata)
    documents: dict[str, dict[str, Any]] = {
        # No "type": the same bundle serves the database, dataset, chart and dashboard imports.
        "metadata.yaml": {"version": VERSION, "timestamp": "1970-01-01T00:00:00+00:00"},
        DATABASE_FILE: _database(masked_uri),
    }
    for name, model in metadata.models.items():
        extra = [step_column(metadata.funnels)] if name == "mart_funnel_unit_steps" else []
        documents[f"datasets/Retrolytics_marts/{name}.yaml"] = _dataset(model, extra)
    for chart in board.charts:
        documents[f"charts/{chart.uuid}.yaml"] = _chart(chart)
    documents["dashboards/retrolytics.yaml"] = _dashboard(metadata, board)
    return documents


def zipped(documents: dict[str, dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, document in sorted(documents.items()):
            archive.writestr(f"{ROOT}/{path}", yaml.safe_dump(document, sort_keys=False))
    return buffer.getvalue()
