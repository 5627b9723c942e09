"""RF: the rule engine (Ziya2 §3.1, "more than 30 rules at three granularities: document, paragraph and
sentence, applied in that order"). `base` says what a rule is, `document`/`paragraph`/`sentence` define them
and end in explicit `RULES` tables, `registry` joins the tables and checks their configuration,
`engine.RuleEngine` applies them to one record, `dataflow.stages.filter.stage.run` applies that with Spark.
"""
from dataflow.stages.filter.rules.registry import REGISTRY, TABLE, ActiveRule, active_rules, all_rules, rules_spec  # noqa: F401
from dataflow.stages.filter.rules.base import Rule  # noqa: F401
