"""The ``retrolytics`` command. Each sub-command is a thin wrapper over a module that owns it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from ingestion.redaction import Redaction
from ingestion.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from ingestion import stack

    if args.action == "down":
        from retrolytics.bi import superset

        superset.down()  # it runs on the stack's PostgreSQL: stop it first
    return stack.main(args.action, citus=getattr(args, "citus", False))


def _bi(args: argparse.Namespace, settings: Settings) -> int:
    from retrolytics.bi import superset

    return superset.main(settings, args.action, args.port, args.definitions)


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from demo import traffic

    def report(line: str) -> None:  # on stderr: stdout carries only the summary
        print(line, file=sys.stderr, flush=True)

    summary = traffic.produce(
        settings,
        events=args.events,
        days=args.days,
        seed=args.seed,
        report=report,
        sample=args.sample,
    )
    print(summary)
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from ingestion import loader, workers

    retry = loader.RetryPolicy(max_failures=args.max_failures, max_delay_s=args.max_backoff_s)
    if args.kafka_timeout_s is not None:
        retry = dataclasses.replace(retry, kafka_timeout_s=args.kafka_timeout_s)
    rules = _redaction(args)
    if rules is None:
        return 2
    options = {
        "redaction": rules,
        "batch_size": args.batch_size,
        "max_batch_seconds": args.max_wait_ms / 1000,
        "report_every_seconds": args.report_every,
    }
    if args.workers > 1:
        return workers.main(
            settings, workers=args.workers, drain=args.drain, loader_options=options, retry=retry
        )
    return loader.main(
        settings,
        drain=args.drain,
        batch_size=args.batch_size,
        max_wait=args.max_wait_ms / 1000,
        report_every=args.report_every,
        retry=retry,
        redaction=rules,
    )


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from retrolytics import erase

    return erase.main(
        settings,
        user=args.user,
        device=args.device,
        reason=args.reason,
        rederive_models=not args.no_rederive,
        definitions=args.definitions,
    )


def _bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from ingestion import schema

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        print(f"raw schema {schema.SCHEMA_VERSION} and grants ready in {conn.info.dbname}")
    return 0


def _redaction(args: argparse.Namespace) -> Redaction | None:
    """The rules of the declarations' privacy.yml; None (after saying why) when it is invalid."""
    from retrolytics.language.check import DefinitionsInvalid, load_redaction
    from retrolytics.warehouse import project

    try:
        return load_redaction(project.definitions_dir(args.definitions))
    except DefinitionsInvalid as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def _collect(args: argparse.Namespace, settings: Settings) -> int:
    from ingestion import collector

    rules = _redaction(args)
    if rules is None:
        return 2
    return collector.main(settings, args.host, args.port, args.allow_origin, rules)


def _shop(args: argparse.Namespace, settings: Settings) -> int:
    from demo import shop

    return shop.main(args.host, args.port, args.collector)


def _maintain(args: argparse.Namespace, settings: Settings) -> int:
    from ingestion import schema

    return schema.maintain(settings, columnar_after_days=args.columnar_after_days)


def _dbt(args: argparse.Namespace, settings: Settings) -> int:
    from retrolytics import commands

    return commands.dbt_main(args, settings)


def _definitions(args: argparse.Namespace, settings: Settings) -> int:
    from retrolytics import commands

    return commands.main(args, settings)


def _add_definitions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--definitions",
        "--path",
        dest="definitions",
        default=None,
        metavar="DIR",
        help="the declarations folder (default: $RETROLYTICS_DEFINITIONS_DIR, else definitions/ "
        "of the project)",
    )


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from demo import job

    return job.main(
        events=args.events, days=args.days, seed=args.seed, definitions=args.definitions
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrolytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop or show the local PostgreSQL + Kafka")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--citus", action="store_true", help="coordinator + 2 workers (needs citus)")
    stack.set_defaults(handler=_stack)

    bi = commands.add_parser(
        "bi", help="start or stop Apache Superset on the marts, with the dashboard as code"
    )
    bi.add_argument("action", choices=["up", "down"])
    bi.add_argument(
        "--port",
        type=int,
        default=None,
        help="the loopback port (default: the one picked the first time, else a free one)",
    )
    _add_definitions_option(bi)
    bi.set_defaults(handler=_bi)

    generate = commands.add_parser("generate", help="produce synthetic web-shop traffic to Kafka")
    generate.add_argument(
        "--events", type=positive_int, required=True, help="how many messages, exactly"
    )
    generate.add_argument(
        "--days", type=positive_int, default=7, help="spread over this many past days"
    )
    generate.add_argument("--seed", type=int, default=1, help="same seed, same events")
    generate.add_argument(
        "--sample",
        type=positive_int,
        help="generate only this many; the rest are their copies by other devices and persons "
        "(the fast path for test and benchmark data)",
    )
    generate.set_defaults(handler=_generate)

    load = commands.add_parser("load", help="load the topic into raw.events, exactly once")
    load.add_argument("--drain", action="store_true", help="stop at the current end of the topic")
    load.add_argument("--batch-size", type=int, default=5000)
    load.add_argument(
        "--workers",
        type=int,
        default=1,
        help="loader processes side by side (at most the topic's partition count is useful)",
    )
    load.add_argument(
        "--max-wait-ms", type=int, default=1000, help="longest a batch waits to fill up"
    )
    load.add_argument("--report-every", type=float, default=10.0, help="seconds between logs")
    load.add_argument(
        "--max-failures",
        type=int,
        default=10,
        help="consecutive PostgreSQL/Kafka failures before exiting with code 75 (default 10)",
    )
    load.add_argument(
        "--max-backoff-s", type=float, default=30.0, help="longest wait between retries"
    )
    load.add_argument(
        "--kafka-timeout-s",
        type=float,
        help="how long one start attempt waits for Kafka to answer",
    )
    _add_definitions_option(load)
    load.set_defaults(handler=_load)

    erase = commands.add_parser(
        "erase", help="forget a person or a device everywhere, and through replays"
    )
    subject = erase.add_mutually_exclusive_group(required=True)
    subject.add_argument("--user", help="a user_id: the person and every device they used")
    subject.add_argument("--device", help="an anonymous_id")
    erase.add_argument("--reason", default=None, help="kept in the erasure log (no personal data)")
    erase.add_argument(
        "--no-rederive", action="store_true", help="leave the models' rebuild to the next run"
    )
    _add_definitions_option(erase)
    erase.set_defaults(handler=_erase)

    bootstrap = commands.add_parser(
        "bootstrap", help="create or update the raw schema and grants (as the database's owner)"
    )
    bootstrap.set_defaults(handler=_bootstrap)

    collect = commands.add_parser("collect", help="serve the HTTP collector (browser → Kafka)")
    collect.add_argument("--host", default="127.0.0.1")
    collect.add_argument("--port", type=int, default=8700)
    collect.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        help="an origin whose pages may send events (repeatable; default: none)",
    )
    _add_definitions_option(collect)
    collect.set_defaults(handler=_collect)

    shop = commands.add_parser("shop", help="serve the demo shop, wired with the snippet")
    shop.add_argument("--host", default="127.0.0.1")
    shop.add_argument("--port", type=int, default=8800)
    shop.add_argument("--collector", default="http://127.0.0.1:8700", help="the collector's URL")
    shop.set_defaults(handler=_shop)

    maintain = commands.add_parser(
        "maintain",
        help="storage upkeep of raw.events: index cooled partitions; columnar on Citus",
    )
    maintain.add_argument(
        "--columnar-after-days",
        type=int,
        default=None,
        help="first move daily partitions that ended this many days ago to Citus columnar storage",
    )
    maintain.set_defaults(handler=_maintain)

    demo = commands.add_parser("demo", help="the main job: stack, traffic, load, derive, report")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--seed", type=int, default=1)
    _add_definitions_option(demo)
    demo.set_defaults(handler=_demo)

    definitions = commands.add_parser("definitions", help="check, show and compile definitions")
    actions = definitions.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate definitions and funnels")
    check.add_argument("path", nargs="?", default=None, help="the declarations folder")
    _add_definitions_option(check)
    show = actions.add_parser("show", help="print a definition's compiled SQL predicate")
    show.add_argument("name")
    _add_definitions_option(show)
    compile_seeds = actions.add_parser("compile", help="write the dbt seeds from the definitions")
    _add_definitions_option(compile_seeds)
    compile_seeds.add_argument("--project-dir", default=None)
    pr_check = actions.add_parser(
        "pr-check", help="build what a change touches into a scratch schema; compare with prod"
    )
    pr_check.add_argument("--state", required=True, help="folder with production's manifest.json")
    pr_check.add_argument("--scratch-schema", default="pr_check", help="prefix of scratch schemas")
    _add_definitions_option(pr_check)
    pr_check.add_argument("--project-dir", default=None)
    pr_check.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text (default), or the Markdown comment a pull request shows",
    )
    pr_check.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="write the report there (stdout still gets the text report)",
    )
    pr_check.add_argument(
        "--production-definitions",
        default=None,
        metavar="DIR",
        help="production's declarations, for the YAML before (default: STATE/definitions)",
    )
    definitions.set_defaults(handler=_definitions)

    dbt = commands.add_parser("dbt", help="compile the definitions, then run dbt on dbt_project/")
    _add_definitions_option(dbt)
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="a dbt command and its options")
    dbt.set_defaults(handler=_dbt)
    return parser


def positive_int(text: str) -> int:
    """argparse's type for a count: a clear usage error instead of a traceback later."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, Settings.from_env())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
