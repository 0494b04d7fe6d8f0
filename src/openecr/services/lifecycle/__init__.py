"""Lifecycle policies: the policy grammar and validation, and the evaluation engine.

``parse_lifecycle_policy`` validates a ``lifecyclePolicyText`` (spec §6.1-§6.4);
``evaluate_lifecycle_policy`` decides which images a policy expires (spec §6.3), for the
preview and for enforcement alike.
"""

from openecr.services.lifecycle.engine import Expiration, ImageFacts, evaluate_lifecycle_policy
from openecr.services.lifecycle.policy import (
    MAX_RULES,
    MAX_WILDCARDS_PER_PATTERN,
    ActionType,
    CountType,
    CountUnit,
    LifecyclePolicy,
    LifecycleRule,
    RuleAction,
    TagSelection,
    TagStatus,
    parse_lifecycle_policy,
)

__all__ = [
    "MAX_RULES",
    "MAX_WILDCARDS_PER_PATTERN",
    "ActionType",
    "CountType",
    "CountUnit",
    "Expiration",
    "ImageFacts",
    "LifecyclePolicy",
    "LifecycleRule",
    "RuleAction",
    "TagSelection",
    "TagStatus",
    "evaluate_lifecycle_policy",
    "parse_lifecycle_policy",
]
