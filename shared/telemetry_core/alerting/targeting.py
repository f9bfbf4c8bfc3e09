"""Which devices a rule applies to (pure)."""

from collections.abc import Mapping

from telemetry_schemas.rules import RuleSpec


def targets(rule: RuleSpec, device_id: str, device_tags: Mapping[str, str] | None = None,
            groups: frozenset[str] = frozenset()) -> bool:  # fmt: skip
    """An empty target list means every device. Ids, groups and tag filters each narrow the set.

    Device groups and tags come from the points themselves (tag ``group`` names the group), since
    device management lives in another service.
    """
    if rule.device_ids and device_id not in rule.device_ids:
        return False
    return matches_tags(rule, device_tags, groups)


def matches_tags(rule: RuleSpec, device_tags: Mapping[str, str] | None = None,
                 groups: frozenset[str] = frozenset()) -> bool:  # fmt: skip
    """The group and tag filters of ``targets`` alone (the device id check left to the caller)."""
    tags = device_tags or {}
    if rule.device_groups and not (set(rule.device_groups) & (groups | {tags.get("group", "")})):
        return False
    return all(tags.get(k) == v for k, v in rule.device_tags.items())
