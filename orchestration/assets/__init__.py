"""The asset graph: raw events (upstream), the dbt models, one asset per funnel."""
