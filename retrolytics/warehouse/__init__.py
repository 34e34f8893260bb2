"""Running the warehouse's transformations: where the dbt project and the declarations are
(``project``), the one way to run dbt (``runner``), and the pull-request check (``pr_check``).

The declaration language (``retrolytics.language``) knows neither dbt nor a database; this
package brings the two together.
"""
