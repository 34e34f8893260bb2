"""Redaction rules: declared in privacy.yml, validated with file:line, applied to events."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.contract import parse_message
from ingestion.redaction import Redaction, redact, truncated_ip
from retrolytics.language import privacy
from tests.support.factories import click_event, encode, pageview_event


def rules_from(tmp_path: Path, text: str) -> tuple[Redaction, list[str]]:
    (tmp_path / "privacy.yml").write_text(text)
    rules, problems = privacy.check(tmp_path, "privacy.yml")
    return rules, [str(p) for p in problems]


def test_the_declared_rules_compile(tmp_path: Path) -> None:
    rules, problems = rules_from(
        tmp_path,
        "privacy:\n  drop_query_parameters: [Coupon]\n  drop_text_for_selectors: ['#cart']\n"
        "  properties:\n    drop: [email]\n    hash: [customer]\n  ip: truncated\n",
    )
    assert problems == []
    assert rules.query_parameters == {"coupon"}
    assert rules.drop_properties == {"email"} and rules.hash_properties == {"customer"}
    assert rules.ip == "truncated" and len(rules.private_text) == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("privacy:\n  drop_query_params: [x]\n", "privacy.yml:2: privacy: unknown key"),
        ("privacy:\n  ip: full\n", "privacy.yml:2: privacy: 'ip' must be one of none, truncated"),
        ("privacy:\n  drop_text_for_selectors: ['a:hover']\n", "privacy.yml:2: privacy: selector"),
        ("privacy:\n  properties:\n    keep: [x]\n", "privacy.yml:3: privacy: unknown key 'keep'"),
        ("privacy:\n  drop_query_parameters: token\n", "must be a list of strings"),
        ("rules: {}\n", "privacy.yml:1: privacy: the file holds one top-level key"),
    ],
)
def test_bad_rules_are_refused_with_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    _, problems = rules_from(tmp_path, text)
    assert any(problem in p for p in problems), problems


def test_without_the_file_the_defaults_apply(tmp_path: Path) -> None:
    rules, problems = privacy.check(tmp_path, "privacy.yml")
    assert problems == [] and "token" in rules.query_parameters and rules.private_text


def test_redaction_removes_what_the_rules_name_and_nothing_else(tmp_path: Path) -> None:
    rules, _ = rules_from(
        tmp_path,
        "privacy:\n  drop_text_for_selectors: ['form#cart']\n"
        "  properties:\n    drop: [email]\n    hash: [customer]\n",
    )
    page = {
        "url": "https://shop.test/cart?token=s3cret&item=7&EMAIL=a%40b.c",
        "referrer": "https://mail.test/?session=1",
    }
    event = parse_message(
        encode(
            click_event(
                page=page,
                properties={"email": "a@b.c", "customer": "C-17", "plan": "pro"},
                context={"ip": "203.0.113.9", "library": "x"},
            )
        )
    )

    assert redact(event, rules)

    assert event.page.url == "https://shop.test/cart?item=7"
    assert event.page.referrer == "https://mail.test/"
    assert event.target.text is None  # the checkout button sits in form#cart
    assert set(event.properties) == {"customer", "plan"}
    assert event.properties["customer"].startswith("sha256:") and event.properties["plan"] == "pro"
    assert event.context == {"library": "x"}  # ip: none
    assert not redact(event, rules)  # applying the rules again changes nothing


def test_text_outside_the_selectors_is_kept(tmp_path: Path) -> None:
    rules, _ = rules_from(tmp_path, "privacy:\n  drop_text_for_selectors: ['#account']\n")
    event = parse_message(encode(click_event()))
    assert not redact(event, rules) and event.target.text == "Check out"
    assert not redact(parse_message(encode(pageview_event())), rules)


@pytest.mark.parametrize(
    ("address", "truncated"),
    [
        ("203.0.113.9", "203.0.113.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("not an ip", None),
    ],
)
def test_ip_addresses_are_truncated(address: str, truncated: str | None) -> None:
    assert truncated_ip(address) == truncated
