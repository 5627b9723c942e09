"""RF: the rule engine (Ziya2 §3.1, "more than 30 rules at three granularities: document, paragraph and
sentence, applied in that order"). `registry` holds the named rules, `document`/`paragraph`/`sentence`
define them, `engine.filter_text` applies them to one record, `dataflow.filter.run` applies that with Spark.
"""
from .registry import REGISTRY, ActiveRule, Rule, active_rules, all_rules, rule  # noqa: F401
