"""deploy/kafka-acls.sh and the table of deploy/INSTALL.md step 8 say the same, and the script is sound.

The script's ACLs are the ones test_kafka_acls.py grants on a secured broker; this keeps the
table an operator reads equal to them, and the script valid shell that refuses to run unset.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from secure_kafka import ACL_SCRIPT, REPO, documented_acls, parse_kafka_acls

pytestmark = pytest.mark.integration

Acl = tuple[str, str, str, str, str]  # principal, operation, resource type, name, pattern
_ROW = re.compile(r"^\| ([^|]+?) \| `(User:[^`]+)` \| .+ \| (.+) \|$")
_PREFIXED = re.compile(r"^(.+) on topics prefixed `([^`]+)`$")
_ITEM = re.compile(r"^(\w+) (group )?`([^`]+)`$")


def table_acls() -> dict[str, set[Acl]]:
    """Return the ACLs in each row of the table of INSTALL.md step 8, by role (topics without prefix)."""
    text = (REPO / "deploy" / "INSTALL.md").read_text()
    section = text[text.index("## 8. ") : text.index("## Upgrading")]
    rows: dict[str, set[Acl]] = {}
    for line in section.splitlines():
        row = _ROW.match(line)
        if row is not None:
            role, principal, cell = row.groups()
            rows[role] = _cell_acls(principal, cell, line)
    return rows


def _cell_acls(principal: str, cell: str, line: str) -> set[Acl]:
    if prefixed := _PREFIXED.match(cell):
        return {
            (principal, op, "TOPIC", prefixed.group(2), "PREFIXED") for op in prefixed.group(1).split(", ")
        }
    acls: set[Acl] = set()
    for item in cell.split(", "):
        match = _ITEM.match(item)
        assert match is not None, f"INSTALL.md: cannot read {item!r} in {line!r}"
        operation, group, name = match.groups()
        kind, full = ("GROUP", name) if group else ("TOPIC", f"smartroute.{name}")
        acls.add((principal, operation, kind, full, "LITERAL"))
    return acls


def as_tuples(tmp_path: Path, **environ: str) -> set[Acl]:
    """Return what the script grants with `environ` (else its defaults), in the table's words."""
    words = {op: "".join(part.title() for part in op.name.split("_")) for op in AclOperation}
    return {
        (acl.principal, words[acl.operation], acl.restype.name, acl.name, acl.resource_pattern_type.name)
        for acl in documented_acls(tmp_path, **environ)
    }


def test_the_install_guide_lists_exactly_the_acls_the_script_grants(tmp_path: Path) -> None:
    rows = table_acls()
    all_in_one = rows.pop("router, all in one (`ALL_IN_ONE=yes`)")
    alone = as_tuples(tmp_path)
    assert len(alone) == 23
    assert set().union(*rows.values()) == alone
    router = {acl for acl in as_tuples(tmp_path, ALL_IN_ONE="yes") if acl[0] == "User:smartroute-router"}
    assert all_in_one == router
    assert ("User:smartroute-router", "Write", "TOPIC", "smartroute.opportunities", "LITERAL") in router
    assert not [acl for acl in router if acl[3] == "smartroute.opportunities" and acl[1] == "Read"]


def test_the_prefix_the_group_and_every_named_desk_and_operator_are_honoured(tmp_path: Path) -> None:
    acls = documented_acls(
        tmp_path, PREFIX="p.", ROUTER_GROUP="g", DESKS="User:a User:b", OPERATORS="User:o User:q"
    )

    def of(principal: str) -> set[tuple[AclOperation, ResourceType, str]]:
        return {(acl.operation, acl.restype, acl.name) for acl in acls if acl.principal == principal}

    assert {acl.name for acl in acls if acl.restype == ResourceType.TOPIC} <= {
        "p.",
        *(
            f"p.{name}"
            for name in ("quotes", "opportunities", "orders", "results", "preferences", "control", "dlq")
        ),
    }
    assert (AclOperation.READ, ResourceType.GROUP, "g") in of("User:smartroute-router")
    assert of("User:a") == of("User:b") and (AclOperation.WRITE, ResourceType.TOPIC, "p.orders") in of(
        "User:a"
    )
    assert of("User:o") == of("User:q") and (AclOperation.WRITE, ResourceType.TOPIC, "p.control") in of(
        "User:o"
    )
    assert not of("User:desk-1") and not of("User:ops")
    assert {acl.resource_pattern_type for acl in acls if acl.principal != "User:smartroute-admin"} == {
        ResourcePatternType.LITERAL
    }


def test_the_script_is_valid_shell_and_refuses_to_run_without_a_broker_or_admin_config(
    tmp_path: Path,
) -> None:
    subprocess.run(["sh", "-n", str(ACL_SCRIPT)], check=True)
    with pytest.raises(subprocess.CalledProcessError):
        documented_acls(tmp_path, ALL_IN_ONE="maybe")
    refused = subprocess.run(
        ["sh", str(ACL_SCRIPT)], check=False, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "set BOOTSTRAP" in refused.stderr


def test_the_reader_of_kafka_acls_arguments_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="not understood"):
        parse_kafka_acls(
            ["--add", "--allow-principal", "User:x", "--operation", "Read", "--topic", "t", "--force"]
        )
    with pytest.raises(ValueError, match="not an --add"):
        parse_kafka_acls(["--allow-principal", "User:x", "--operation", "Read", "--topic", "t"])
